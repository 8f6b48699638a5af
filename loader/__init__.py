"""fw-load: inspects an fwc artifact and puts it on the node's interfaces."""
