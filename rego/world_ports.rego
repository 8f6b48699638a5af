# No wide port range is open to the whole Internet, counted over the allowed packets that
# open flows from the world. One finding per deciding rules, with the widest span.
package fwc

import data.fwc.lib
import rego.v1

wide_openers := [region |
	some region in lib.world_openers
	region.destination_port_count > data.fwc.config.settings.max_world_ports
	some proto in ["tcp", "udp"]
	lib.carries(region, proto)
]

deny_world_port_span := [{"msg": msg, "rule": rules[0]} |
	some rules in {region.rules | some region in wide_openers}
	regions := [region | some region in wide_openers; region.rules == rules]
	ports := widest_span(regions)
	protocols := [proto |
		some proto in ["tcp", "udp"]
		some region in regions
		lib.carries(region, proto)
	]
	limit := data.fwc.config.settings.max_world_ports
	# concat, not sprintf: regopy 1.5 quotes computed strings that sprintf formats.
	msg := concat("", [
		lib.deciders(regions[0]), " opens ", format_int(ports, 10), " ",
		concat("/", {p | some p in protocols}), " ports to ", lib.world_sources(regions), "; at most ",
		format_int(limit, 10), " are allowed",
	])
]

# The most ports of one region, without max(): regopy 1.5 compares numbers in it as text.
widest_span(regions) := n if {
	some region in regions
	n := region.destination_port_count
	not wider_span(regions, n)
}

wider_span(regions, count) if {
	some region in regions
	region.destination_port_count > count
}
