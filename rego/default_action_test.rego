package fwc.default_action_test

import rego.v1

test_deny_default_passes if {
	count(data.fwc.deny_default_action) == 0 with input.default_action as "deny" with input.name as "p"
}

test_allow_default_fires if {
	count(data.fwc.deny_default_action) == 1 with input.default_action as "allow" with input.name as "p"
}
