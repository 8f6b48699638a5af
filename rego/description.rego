# Reviewers need to know why a rule exists.
package fwc

import rego.v1

warn_missing_description := [{"msg": msg, "rule": rule.name} |
	some rule in input.rules
	trim_space(rule.description) == ""
	msg := sprintf("rule `%s` has no description", [rule.name])
]
