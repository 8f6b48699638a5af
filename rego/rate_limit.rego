# Rate limits are meant to limit: pps within the organisation's bounds.
package fwc

import rego.v1

deny_rate_limit_pps := [{"msg": msg, "rule": rule.name} |
	some rule in input.rules
	rule.action == "rate_limit"
	msg := pps_problem(rule)
]

pps_problem(rule) := sprintf("rate_limit rule `%s` sets no rate_limit_pps", [rule.name]) if {
	not is_number(rule.rate_limit_pps)
}

pps_problem(rule) := msg if {
	is_number(rule.rate_limit_pps)
	low := data.fwc.config.settings.rate_limit_min_pps
	high := data.fwc.config.settings.rate_limit_max_pps
	not pps_within(rule.rate_limit_pps, low, high)
	msg := sprintf(
		"rate_limit rule `%s` allows %d packets per second; the organisation allows %d to %d",
		[rule.name, rule.rate_limit_pps, low, high],
	)
}

pps_within(pps, low, high) if {
	low <= pps
	pps <= high
}
