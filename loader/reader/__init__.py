"""Reading an artifact without the kernel: the ELF and its manifest into an ArtifactSpec."""
