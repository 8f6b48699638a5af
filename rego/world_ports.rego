# No rule opens a wide port range to the whole Internet.
package fwc

import data.fwc.lib
import rego.v1

deny_world_port_span := [{"msg": msg, "rule": rule.name} |
	some rule in lib.world_openers
	protocols := [proto | some proto in ["tcp", "udp"]; lib.carries(rule, proto)]
	count(protocols) > 0
	ports := lib.port_count(rule.destination_ports)
	limit := data.fwc.config.settings.max_world_ports
	ports > limit
	# concat, not sprintf: regopy 1.5 quotes computed strings that sprintf formats.
	msg := concat("", [
		"rule `", rule.name, "` opens ", format_int(ports, 10), " ", concat("/", protocols),
		" ports to any address; at most ", format_int(limit, 10), " are allowed",
	])
]
