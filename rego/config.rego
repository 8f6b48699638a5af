# Settings of the bundled invariants: defaults here, overrides from a data file
# (`fwc check --data FILE`) under the top-level key `fwc_config`.
package fwc.config

import rego.v1

defaults := {
	"management_sets": ["mgmt_nets", "management", "mgmt"],
	"ssh_port": 22,
	"admin_ports": [
		{"service": "SSH", "port": 22, "protocols": ["tcp"]},
		{"service": "RDP", "port": 3389, "protocols": ["tcp", "udp"]},
	],
	"rate_limit_min_pps": 10,
	"rate_limit_max_pps": 1000000,
	"max_world_ports": 1024,
	# Sources holding a CIDR this wide or wider are "the world" (docs/rego.md).
	"world_prefix_len": 4,
	# Return traffic pins at most this many source ports (a service's, such as 53).
	"max_return_source_ports": 1024,
	"return_traffic_opens": false,
}

default overrides := {}

overrides := data.fwc_config

settings := object.union(defaults, overrides)
