"""Exact header-space analysis of the IR: which packets each rule decides, shadowed and
redundant rules, the packets two policies treat differently, and proofs over regions."""
