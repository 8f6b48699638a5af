"""The node: interfaces through netlink, XDP attachment, and the pins fw-load owns."""
