"""Importers: other firewalls' rulesets (iptables-save, nft JSON) read into one model of
imported rules, flattened into fwc's first-match order, and written as a policy."""
