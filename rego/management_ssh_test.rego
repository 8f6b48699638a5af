package fwc.management_ssh_test

import data.fwc.testing
import rego.v1

ssh_from(nets) := testing.region({
	"source_cidrs": nets, "destination_ports": [testing.port(22)], "destination_port_count": 1,
})

test_reachable_passes if {
	count(data.fwc.deny_management_ssh) == 0 with data.fwc.management_networks as [testing.mgmt4]
		with input.analysis.allowed as [ssh_from([testing.mgmt4])]
		with input.analysis.rate_limited as []
}

test_rate_limited_is_reachable if {
	count(data.fwc.deny_management_ssh) == 0 with data.fwc.management_networks as [testing.mgmt4]
		with input.analysis.allowed as []
		with input.analysis.rate_limited as [ssh_from([testing.world4])]
}

test_nothing_let_through_fires if {
	count(data.fwc.deny_management_ssh) == 1 with data.fwc.management_networks as [testing.mgmt4]
		with input.analysis.allowed as []
		with input.analysis.rate_limited as []
}

# What an earlier deny of one host leaves: the network minus that host is no region
# that holds all of the management network.
test_part_of_the_network_fires if {
	count(data.fwc.deny_management_ssh) == 1 with data.fwc.management_networks as [testing.mgmt4]
		with input.analysis.allowed as [ssh_from([testing.host4])]
		with input.analysis.rate_limited as []
}

test_return_traffic_only_fires if {
	r := object.union(ssh_from([testing.mgmt4]), {"tcp_flags": {"set": ["ACK"], "clear": []}})
	count(data.fwc.deny_management_ssh) == 1 with data.fwc.management_networks as [testing.mgmt4]
		with input.analysis.allowed as [r]
		with input.analysis.rate_limited as []
}

test_missing_set_warns if {
	count(data.fwc.warn_management_set) == 1 with data.fwc.management_sets as []
}

test_present_set_does_not_warn if {
	count(data.fwc.warn_management_set) == 0 with data.fwc.management_sets as ["mgmt_nets"]
}

test_other_family_is_no_cover if {
	count(data.fwc.deny_management_ssh) == 1 with data.fwc.management_networks as [testing.mgmt4]
		with input.analysis.allowed as [object.union(ssh_from([]), {"family": "ipv6"})]
		with input.analysis.rate_limited as []
}
