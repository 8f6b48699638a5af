# Fixtures for the invariants' tests: a rule with every field, overridable per test.
package fwc.testing

import rego.v1

world4 := {"cidr": "0.0.0.0/0", "family": "ipv4", "prefix_len": 0, "first": "00000000", "last": "ffffffff"}

mgmt4 := {"cidr": "10.20.0.0/16", "family": "ipv4", "prefix_len": 16, "first": "0a140000", "last": "0a14ffff"}

host4 := {"cidr": "10.20.1.5/32", "family": "ipv4", "prefix_len": 32, "first": "0a140105", "last": "0a140105"}

base := {
	"id": 0, "name": "r", "priority": 10, "action": "allow", "protocol": "tcp",
	"source_cidrs": [], "destination_cidrs": [], "source_ports": [], "destination_ports": [],
	"tcp_flags": {"set": [], "clear": []}, "icmp_types": [],
	"rate_limit_pps": null, "rate_limit_burst": null, "log": false,
	"description": "why", "file": "p.yaml", "line": 3,
}

rule(fields) := object.union(base, fields)

port(n) := {"first": n, "last": n}

world6 := {"cidr": "::/0", "family": "ipv6", "prefix_len": 0, "first": "00000000000000000000000000000000", "last": "ffffffffffffffffffffffffffffffff"}

low_half4 := {"cidr": "0.0.0.0/1", "family": "ipv4", "prefix_len": 1, "first": "00000000", "last": "7fffffff"}

# A region of the analysis (input.analysis.allowed): every new TCP flow from the IPv4
# Internet (an empty address list: every address of the family), decided by rule `r`;
# overridable per test.
region_base := {
	"protocol": "tcp", "family": "ipv4", "source_cidrs": [], "destination_cidrs": [],
	"source_ports": [], "source_port_count": 65536,
	"destination_ports": [], "destination_port_count": 65536,
	"tcp_flags": {"set": [], "clear": []}, "icmp_types": [], "fragment": "first-or-none",
	"states": [], "rules": ["r"],
}

region(fields) := object.union(region_base, fields)
