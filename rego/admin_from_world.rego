# Nobody on the Internet can open an administrative session (SSH, RDP): no allowed packet
# that opens a flow from the world reaches an admin port, whichever rules decide it.
# One finding per service and deciding rules, naming every family it is open from.
package fwc

import data.fwc.lib
import rego.v1

admin_openings contains [region.rules, service] if {
	some region in lib.world_openers
	some service in data.fwc.config.settings.admin_ports
	opens_admin(region, service)
}

opens_admin(region, service) if {
	lib.reaches_port(region, service.port)
	some proto in service.protocols
	lib.carries(region, proto)
}

deny_admin_from_world := [{"msg": msg, "rule": rules[0]} |
	some [rules, service] in admin_openings
	regions := [region |
		some region in lib.world_openers
		region.rules == rules
		opens_admin(region, service)
	]
	protocols := [proto |
		some proto in service.protocols
		carried_by(regions, proto)
	]
	# concat, not sprintf: regopy 1.5 quotes computed strings that sprintf formats.
	msg := concat("", [
		lib.deciders(regions[0]), " allows ", service.service, " (",
		concat("/", protocols), " port ", format_int(service.port, 10),
		") from ", lib.world_sources(regions), "; restrict source_cidrs",
	])
]

carried_by(regions, proto) if {
	some region in regions
	lib.carries(region, proto)
}
