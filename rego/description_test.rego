package fwc.description_test

import data.fwc.testing
import rego.v1

test_described_passes if {
	count(data.fwc.warn_missing_description) == 0 with input.rules as [testing.rule({})]
}

test_blank_description_warns if {
	count(data.fwc.warn_missing_description) == 1 with input.rules as [testing.rule({"description": "  "})]
}
