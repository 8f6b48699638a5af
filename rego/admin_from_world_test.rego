package fwc.admin_from_world_test

import data.fwc.testing
import rego.v1

ssh_world := testing.region({"destination_ports": [testing.port(22)], "destination_port_count": 1})

test_ssh_from_anywhere_fires if {
	count(data.fwc.deny_admin_from_world) == 1 with input.analysis.allowed as [ssh_world]
}

test_ssh_from_half_the_internet_fires if {
	r := object.union(ssh_world, {"source_cidrs": [testing.low_half4]})
	count(data.fwc.deny_admin_from_world) == 1 with input.analysis.allowed as [r]
}

test_ssh_from_ipv6_world_fires if {
	r := object.union(ssh_world, {"family": "ipv6", "source_cidrs": [testing.world6]})
	count(data.fwc.deny_admin_from_world) == 1 with input.analysis.allowed as [r]
}

test_rdp_over_udp_fires if {
	r := testing.region({"protocol": "udp", "destination_ports": [{"first": 3000, "last": 4000}]})
	count(data.fwc.deny_admin_from_world) == 1 with input.analysis.allowed as [r]
}

test_default_action_fires_without_a_rule if {
	r := object.union(ssh_world, {"rules": ["default"]})
	[finding] := data.fwc.deny_admin_from_world with input.analysis.allowed as [r]
	startswith(finding.msg, "the default action allows SSH")
}

test_ssh_from_management_passes if {
	r := object.union(ssh_world, {"source_cidrs": [testing.mgmt4]})
	count(data.fwc.deny_admin_from_world) == 0 with input.analysis.allowed as [r]
}

test_return_traffic_passes if {
	r := object.union(ssh_world, {"tcp_flags": {"set": ["ACK"], "clear": []}})
	count(data.fwc.deny_admin_from_world) == 0 with input.analysis.allowed as [r]
}

test_pinned_source_port_passes if {
	r := object.union(ssh_world, {"source_ports": [testing.port(443)], "source_port_count": 1})
	count(data.fwc.deny_admin_from_world) == 0 with input.analysis.allowed as [r]
}

test_every_source_port_is_no_pin if {
	r := object.union(ssh_world, {"source_ports": [{"first": 1, "last": 65535}], "source_port_count": 65535})
	count(data.fwc.deny_admin_from_world) == 1 with input.analysis.allowed as [r]
}

test_non_first_fragments_pass if {
	r := object.union(ssh_world, {"protocol": "any", "destination_ports": [], "fragment": "non-first"})
	count(data.fwc.deny_admin_from_world) == 0 with input.analysis.allowed as [r]
}

test_nothing_allowed_passes if {
	count(data.fwc.deny_admin_from_world) == 0 with input.analysis.allowed as []
}

test_world_block_is_named if {
	[finding] := data.fwc.deny_admin_from_world with input.analysis.allowed as [ssh_world]
	contains(finding.msg, "from the Internet (0.0.0.0/0)")
}
