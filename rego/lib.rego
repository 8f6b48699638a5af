# Helpers over the input's rules and the analysis regions (see docs/rego.md): every check
# is per rule or per region, so the invariants stay linear in the size of the policy.
# regopy pays for every test and function call on every entry, so a scan puts its
# cheapest, most selective test first and calls functions only for the entries that pass.
package fwc.lib

import rego.v1

# The regions of packets that open new flows from the whole Internet and are allowed:
# read from the analysis (docs/rego.md), so a shadowed allow counts for nothing and an
# address space split over several rules, or written in halves, counts as a whole. A region
# that arrives on loopback only is the host talking to itself, not the world.
world_openers := [region |
	some region in input.analysis.allowed
	not region.loopback
	from_world(region)
	opens_flows(region)
]

# The region's sources hold a block of at least /world_prefix_len: a network no
# organisation owns alone (0.0.0.0/0, ::/0, 2000::/3, or what an earlier deny leaves
# of them).
from_world(region) if count(region.source_cidrs) == 0

from_world(region) if {
	some address in region.source_cidrs
	address.prefix_len <= data.fwc.config.settings.world_prefix_len
}

# The region (or rule) can hold packets of transport protocol `proto` ("tcp" or "udp").
carries(region, proto) if {
	region.protocol in [proto, "any"]
	count(region.icmp_types) == 0
}

# The region (or rule) can hold destination port `port`.
reaches_port(region, port) if port_in(region.destination_ports, port)

# `port` is in `ranges` (a port list; empty means every port).
port_in(ranges, port) if count(ranges) == 0

port_in(ranges, port) if {
	some range in ranges
	range.first <= port
	port <= range.last
}

# Stateless return traffic: replies pinned to a few source ports (a service's), or TCP
# segments that cannot open a connection (ACK required, or SYN required clear).
return_traffic(region) if {
	count(region.source_ports) > 0
	region.source_port_count <= data.fwc.config.settings.max_return_source_ports
}

return_traffic(region) if "ACK" in region.tcp_flags.set

return_traffic(region) if "SYN" in region.tcp_flags.clear

# The region's packets can open a new flow: first fragments (or whole packets) that are
# not return traffic.
opens_flows(region) if {
	region.fragment == "first-or-none"
	not return_traffic(region)
}

opens_flows(region) if {
	region.fragment == "first-or-none"
	data.fwc.config.settings.return_traffic_opens
}

# Who decides a region's packets, for a message: "rule `a`", "rules `a`, `b`" or "the
# default action".
deciders(region) := "the default action" if region.rules == ["default"]

deciders(region) := concat("", ["rule `", region.rules[0], "`"]) if {
	count(region.rules) == 1
	region.rules[0] != "default"
}

deciders(region) := concat("", ["rules ", concat(", ", [name |
	some rule in region.rules
	name := decider_name(rule)
])]) if count(region.rules) > 1

decider_name(rule) := "the default action" if rule == "default"

decider_name(rule) := concat("", ["`", rule, "`"]) if rule != "default"

# Where some regions' packets come from, for a message: the widest world blocks of each
# family, "the Internet (0.0.0.0/0, ::/0)".
world_sources(regions) := concat("", ["the Internet (", concat(", ", {a.cidr |
	some a in world_blocks(regions)
	not wider_source(regions, a)
}), ")"])

# The blocks of /world_prefix_len or wider in the regions' sources (an empty list is
# every address of the region's family).
world_blocks(regions) := [a |
	some region in regions
	some a in sources(region)
	a.prefix_len <= data.fwc.config.settings.world_prefix_len
]

sources(region) := region.source_cidrs if count(region.source_cidrs) > 0

sources(region) := [whole[region.family]] if count(region.source_cidrs) == 0

whole := {
	"ipv4": {"cidr": "0.0.0.0/0", "family": "ipv4", "prefix_len": 0},
	"ipv6": {"cidr": "::/0", "family": "ipv6", "prefix_len": 0},
}

wider_source(regions, address) if {
	some other in world_blocks(regions)
	other.family == address.family
	other.prefix_len < address.prefix_len
}

# Some entry of `ranges` (an address list; empty means every address) holds all of `net`.
covers(ranges, net) if count(ranges) == 0

covers(ranges, net) if {
	some range in ranges
	range.family == net.family
	range.first <= net.first
	net.last <= range.last
}
