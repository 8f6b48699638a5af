"""fwc: a policy-as-code XDP firewall (the compiler and the node loader)."""

__version__ = "0.1.0"
