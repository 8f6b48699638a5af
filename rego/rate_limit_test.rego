package fwc.rate_limit_test

import data.fwc.testing
import rego.v1

limit(pps) := testing.rule({"action": "rate_limit", "rate_limit_pps": pps})

test_sane_pps_passes if {
	count(data.fwc.deny_rate_limit_pps) == 0 with input.rules as [limit(500)]
}

test_tiny_pps_fires if {
	count(data.fwc.deny_rate_limit_pps) == 1 with input.rules as [limit(1)]
}

test_huge_pps_fires if {
	count(data.fwc.deny_rate_limit_pps) == 1 with input.rules as [limit(50000000)]
}

test_bounds_come_from_data if {
	count(data.fwc.deny_rate_limit_pps) == 0 with input.rules as [limit(1)]
		with data.fwc_config.rate_limit_min_pps as 1
}
