"""The kernel layer: libbpf, loaded programs, maps and the resources that own their fds."""
