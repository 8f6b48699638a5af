package fwc.world_ports_test

import data.fwc.testing
import rego.v1

span(ranges, n) := testing.region({"destination_ports": ranges, "destination_port_count": n})

test_all_ports_fires if {
	count(data.fwc.deny_world_port_span) == 1 with input.analysis.allowed as [span([], 65536)]
}

test_small_range_passes if {
	count(data.fwc.deny_world_port_span) == 0 with input.analysis.allowed as [span([{"first": 8000, "last": 8099}], 100)]
}

test_limit_comes_from_data if {
	count(data.fwc.deny_world_port_span) == 1 with input.analysis.allowed as [span([{"first": 8000, "last": 8099}], 100)]
		with data.fwc_config.max_world_ports as 10
}

test_icmp_region_passes if {
	r := testing.region({"protocol": "icmp", "icmp_types": [8]})
	count(data.fwc.deny_world_port_span) == 0 with input.analysis.allowed as [r]
}

test_management_sources_pass if {
	r := object.union(span([], 65536), {"source_cidrs": [testing.mgmt4]})
	count(data.fwc.deny_world_port_span) == 0 with input.analysis.allowed as [r]
}

test_replies_by_state_pass if {
	r := object.union(span([], 65536), {"states": ["established", "related"]})
	count(data.fwc.deny_world_port_span) == 0 with input.analysis.allowed as [r]
}

test_new_connections_by_state_fire if {
	r := object.union(span([], 65536), {"states": ["established", "new"]})
	count(data.fwc.deny_world_port_span) == 1 with input.analysis.allowed as [r]
}

test_untracked_packets_fire if {
	r := object.union(span([], 65536), {"states": ["related", "untracked"]})
	count(data.fwc.deny_world_port_span) == 1 with input.analysis.allowed as [r]
}
