package fwc.world_ports_test

import data.fwc.testing
import rego.v1

span(ranges) := testing.rule({"name": "wide", "destination_ports": ranges})

test_all_ports_fires if {
	count(data.fwc.deny_world_port_span) == 1 with input.rules as [span([])]
}

test_overlapping_ranges_count_once if {
	data.fwc.lib.port_count([{"first": 80, "last": 90}, {"first": 85, "last": 100}, testing.port(9)]) == 22
}

test_small_range_passes if {
	count(data.fwc.deny_world_port_span) == 0 with input.rules as [span([{"first": 8000, "last": 8099}])]
}

test_limit_comes_from_data if {
	count(data.fwc.deny_world_port_span) == 1 with input.rules as [span([{"first": 8000, "last": 8099}])]
		with data.fwc_config.max_world_ports as 10
}

test_icmp_rule_passes if {
	r := testing.rule({"protocol": "icmp", "icmp_types": [8]})
	count(data.fwc.deny_world_port_span) == 0 with input.rules as [r]
}
