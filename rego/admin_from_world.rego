# No rule lets anyone on the Internet open an administrative session (SSH, RDP).
package fwc

import data.fwc.lib
import rego.v1

deny_admin_from_world := [{"msg": msg, "rule": rule.name} |
	some rule in lib.world_openers
	some service in data.fwc.config.settings.admin_ports
	lib.reaches_port(rule, service.port)
	protocols := [proto | some proto in service.protocols; lib.carries(rule, proto)]
	count(protocols) > 0
	# concat, not sprintf: regopy 1.5 quotes computed strings that sprintf formats.
	msg := concat("", [
		"rule `", rule.name, "` allows ", service.service, " (", concat("/", protocols),
		" port ", format_int(service.port, 10), ") from any address; restrict source_cidrs",
	])
]
