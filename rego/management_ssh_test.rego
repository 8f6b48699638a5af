package fwc.management_ssh_test

import data.fwc.testing
import rego.v1

allow_ssh := testing.rule({
	"id": 1, "name": "ssh", "source_cidrs": [testing.mgmt4],
	"destination_ports": [testing.port(22)],
})

drop_host := testing.rule({"id": 0, "name": "drop", "action": "deny", "source_cidrs": [testing.host4]})

test_reachable_passes if {
	count(data.fwc.deny_management_ssh) == 0 with data.fwc.management_networks as [testing.mgmt4] with input.rules as [allow_ssh]
}

test_no_allow_rule_fires if {
	count(data.fwc.deny_management_ssh) == 1 with data.fwc.management_networks as [testing.mgmt4] with input.rules as []
		with input.default_action as "deny"
}

test_earlier_deny_fires if {
	count(data.fwc.deny_management_ssh) == 1 with data.fwc.management_networks as [testing.mgmt4]
		with input.rules as [drop_host, allow_ssh]
}

test_later_deny_passes if {
	later := object.union(drop_host, {"id": 2})
	count(data.fwc.deny_management_ssh) == 0 with data.fwc.management_networks as [testing.mgmt4]
		with input.rules as [allow_ssh, later]
}

test_missing_set_warns if {
	count(data.fwc.warn_management_set) == 1 with data.fwc.management_sets as []
}

test_present_set_does_not_warn if {
	count(data.fwc.warn_management_set) == 0 with data.fwc.management_sets as ["mgmt_nets"]
}
