"""Live update of a pinned tables policy: fill the idle generation, then flip one index."""
