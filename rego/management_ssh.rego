# Operators never lock themselves out: every management network reaches SSH.
#
# A management network is an address entry of a set named in
# settings.management_sets. It reaches SSH when some allow (or rate_limit) rule admits
# new TCP connections from all of it to the SSH port, and no deny rule evaluated
# earlier drops part of that traffic.
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
		"management network %s cannot reach SSH (tcp port %d): no allow rule admits it before a deny rule or the default action drops it",
		[net.cidr, ssh_port],
	)
]

ssh_port := data.fwc.config.settings.ssh_port

# The rules that can see SSH traffic at all, collected once so that each management
# network costs one pass over them.
ssh_rules := [rule |
	some rule in input.rules
	# lib.carries(rule, "tcp") and lib.reaches_port(rule, ssh_port), inlined and the most
	# selective test first: this scan runs over every rule.
	rule.protocol in ["tcp", "any"]
	lib.port_in(rule.destination_ports, ssh_port)
	count(rule.icmp_types) == 0
]

admitting := [rule |
	some rule in ssh_rules
	rule.action != "deny"
	not lib.return_traffic(rule)
]

dropping := [rule |
	some rule in ssh_rules
	rule.action == "deny"
	count(rule.source_ports) == 0
]

ssh_reachable(net) if {
	some rule in admitting
	lib.covers(rule.source_cidrs, net)
	not blocked_before(rule, net)
}

ssh_reachable(net) if {
	input.default_action == "allow"
	not blocked_anywhere(net)
}

# A deny rule ahead of `allowing` drops some of the SSH traffic `allowing` admits from `net`.
blocked_before(allowing, net) if {
	some rule in dropping
	rule.id < allowing.id
	lib.overlaps(rule.source_cidrs, net)
	lib.lists_overlap(rule.destination_cidrs, allowing.destination_cidrs)
}

blocked_anywhere(net) if {
	some rule in dropping
	lib.overlaps(rule.source_cidrs, net)
}
