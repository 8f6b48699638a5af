package fwc.admin_from_world_test

import data.fwc.testing
import rego.v1

ssh_world := testing.rule({"name": "ssh", "destination_ports": [testing.port(22)]})

test_ssh_from_anywhere_fires if {
	count(data.fwc.deny_admin_from_world) == 1 with input.rules as [ssh_world]
}

test_ssh_from_slash_zero_fires if {
	r := object.union(ssh_world, {"source_cidrs": [testing.world4]})
	count(data.fwc.deny_admin_from_world) == 1 with input.rules as [r]
}

test_rdp_over_udp_fires if {
	r := testing.rule({"protocol": "udp", "destination_ports": [{"first": 3000, "last": 4000}]})
	count(data.fwc.deny_admin_from_world) == 1 with input.rules as [r]
}

test_ssh_from_management_passes if {
	r := object.union(ssh_world, {"source_cidrs": [testing.mgmt4]})
	count(data.fwc.deny_admin_from_world) == 0 with input.rules as [r]
}

test_return_traffic_passes if {
	r := object.union(ssh_world, {"tcp_flags": {"set": ["ACK"], "clear": []}})
	count(data.fwc.deny_admin_from_world) == 0 with input.rules as [r]
}

test_deny_rule_passes if {
	r := object.union(ssh_world, {"action": "deny"})
	count(data.fwc.deny_admin_from_world) == 0 with input.rules as [r]
}
