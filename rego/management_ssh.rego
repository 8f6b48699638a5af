# Operators never lock themselves out: every management network reaches SSH.
#
# A management network is an address entry of a set named in
# settings.management_sets. It reaches SSH when one region of the packets the policy
# lets through (allowed or rate-limited, from the analysis: after every earlier deny)
# holds new TCP connections from all of it to the SSH port.
package fwc

import data.fwc.lib
import rego.v1

management_sets := [name |
	some name
	input.sets[name]
	name in data.fwc.config.settings.management_sets
]

management_networks := [net |
	some name
	entries := input.sets[name]
	name in data.fwc.config.settings.management_sets
	some net in entries
	net.cidr
]

warn_management_set := [msg |
	count(management_sets) == 0
	msg := concat("", [
		"no management set (", concat(", ", data.fwc.config.settings.management_sets),
		") is defined, so SSH reachability from management is not checked",
	])
]

deny_management_ssh := [msg |
	some net in management_networks
	not ssh_reachable(net)
	msg := sprintf(
		"management network %s cannot reach SSH (tcp port %d): no packets from all of it to that port are let through, by an allow rule or the default action, ahead of every deny",
		[net.cidr, ssh_port],
	)
]

ssh_port := data.fwc.config.settings.ssh_port

# The regions that let new SSH connections through, collected once so that each
# management network costs one pass over them.
admitting := [region |
	some region in array.concat(input.analysis.allowed, input.analysis.rate_limited)
	# lib.carries(region, "tcp") and lib.reaches_port(region, ssh_port), inlined and the
	# most selective test first: this scan runs over every region.
	region.protocol in ["tcp", "any"]
	lib.port_in(region.destination_ports, ssh_port)
	lib.opens_flows(region)
]

ssh_reachable(net) if {
	some region in admitting
	region.family == net.family
	lib.covers(region.source_cidrs, net)
}
