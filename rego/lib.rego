# Helpers over the input's rules (see docs/rego.md): every check is per rule, so the
# invariants stay linear in the number of rules. regopy pays for every test and function
# call on every rule, so a scan over all rules puts its cheapest, most selective test first
# and calls functions only for the rules that pass it.
package fwc.lib

import rego.v1

# The allow rules that let new flows in from any address; evaluated once per query for
# every invariant that needs them.
world_openers := [rule |
	some rule in input.rules
	rule.action == "allow"
	from_world(rule)
	opens_flows(rule)
]

# The rule matches every source address (no source list, or a /0 of either family).
from_world(rule) if count(rule.source_cidrs) == 0

from_world(rule) if {
	some address in rule.source_cidrs
	address.prefix_len == 0
}

# The rule can match packets of transport protocol `proto` ("tcp" or "udp").
carries(rule, proto) if {
	rule.protocol in [proto, "any"]
	count(rule.icmp_types) == 0
}

# The rule can match destination port `port`.
reaches_port(rule, port) if port_in(rule.destination_ports, port)

# `port` is in `ranges` (a rule's port list; empty means every port).
port_in(ranges, port) if count(ranges) == 0

port_in(ranges, port) if {
	some range in ranges
	range.first <= port
	port <= range.last
}

# Stateless return traffic: replies pinned to a service's source port, or TCP segments
# that cannot open a connection (ACK required, or SYN required clear).
return_traffic(rule) if count(rule.source_ports) > 0

return_traffic(rule) if "ACK" in rule.tcp_flags.set

return_traffic(rule) if "SYN" in rule.tcp_flags.clear

# The rule lets new flows in.
opens_flows(rule) if {
	rule.action == "allow"
	not return_traffic(rule)
}

opens_flows(rule) if {
	rule.action == "allow"
	data.fwc.config.settings.return_traffic_opens
}

# Some entry of `ranges` (a rule's address list; empty means every address) holds all of `net`.
covers(ranges, net) if count(ranges) == 0

covers(ranges, net) if {
	some range in ranges
	range.family == net.family
	range.first <= net.first
	net.last <= range.last
}

# Some entry of `ranges` (empty means every address) shares an address with `net`.
overlaps(ranges, net) if count(ranges) == 0

overlaps(ranges, net) if {
	some range in ranges
	range.family == net.family
	range.first <= net.last
	net.first <= range.last
}

# Two address lists (empty means every address) share an address.
lists_overlap(a, b) if count(a) == 0

lists_overlap(a, b) if {
	count(a) > 0
	some net in a
	overlaps(b, net)
}

# How many distinct ports a port list names (empty means all 65536). The union is summed
# segment by segment; regopy 1.5's max, min and sort compare numbers as text, so they are
# not used.
port_count(ranges) := 65536 if count(ranges) == 0

port_count(ranges) := n if {
	count(ranges) > 0
	starts := segment_starts(ranges)
	sizes := [size |
		some start in starts
		size := (segment_end(ranges, start) - start) + 1
	]
	n := sum(sizes)
}

segment_starts(ranges) := {r.first | some r in ranges; not holds_port(ranges, r.first - 1)}

segment_ends(ranges) := {r.last | some r in ranges; not holds_port(ranges, r.last + 1)}

segment_end(ranges, start) := end if {
	ends := segment_ends(ranges)
	some end in ends
	end >= start
	not end_between(ranges, start, end)
}

end_between(ranges, start, end) if {
	ends := segment_ends(ranges)
	some other in ends
	other >= start
	other < end
}

holds_port(ranges, port) if {
	some r in ranges
	r.first <= port
	port <= r.last
}
