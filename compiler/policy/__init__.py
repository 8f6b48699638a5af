"""The policy front end: from a YAML file to the checked, normalized IR."""
