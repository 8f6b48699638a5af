# Traffic that no rule names is dropped: the default action is deny.
package fwc

import rego.v1

deny_default_action := [msg |
	input.default_action != "deny"
	msg := sprintf(
		"policy `%s` has default_action %s; the organisation requires deny, with explicit allow rules",
		[input.name, input.default_action],
	)
]
