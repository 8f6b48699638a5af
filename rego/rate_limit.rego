# Rate limits are meant to limit: pps within the organisation's bounds.
package fwc

import rego.v1

deny_rate_limit_pps := [{"msg": pps_problem(rule), "rule": rule.name} |
	some rule in input.rules
	rule.action == "rate_limit"
	not pps_within(rule.rate_limit_pps)
]

pps_low := data.fwc.config.settings.rate_limit_min_pps

pps_high := data.fwc.config.settings.rate_limit_max_pps

pps_within(pps) if {
	is_number(pps)
	pps_low <= pps
	pps <= pps_high
}

pps_problem(rule) := sprintf("rate_limit rule `%s` sets no rate_limit_pps", [rule.name]) if {
	not is_number(rule.rate_limit_pps)
}

pps_problem(rule) := sprintf(
	"rate_limit rule `%s` allows %d packets per second; the organisation allows %d to %d",
	[rule.name, rule.rate_limit_pps, pps_low, pps_high],
) if {
	is_number(rule.rate_limit_pps)
}
