// SPDX-License-Identifier: GPL-2.0
/* The per-rule counters map of docs/artifact.md and the verdict bookkeeping shared by every strategy. */
#ifndef FWC_COUNTERS_H
#define FWC_COUNTERS_H

#include "fwc_bpf.h"

struct fwc_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FWC_SLOT_COUNT);
	__type(key, __u32);
	__type(value, struct fwc_counter);
} fwc_counters SEC(".maps");

static __fwc_inline void fwc_count(__u32 slot, __u64 bytes)
{
	struct fwc_counter *c = bpf_map_lookup_elem(&fwc_counters, &slot);

	/* Per-CPU values: no other CPU writes this slot, so plain adds are exact. */
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* Counts the verdict in its slot; in dry-run a drop is counted as would_drop and passes. */
static __fwc_inline int fwc_finish(__u32 slot, int action, __u64 bytes)
{
	fwc_count(slot, bytes);
	if (FWC_DRY_RUN && action == XDP_DROP) {
		fwc_count(FWC_SLOT_WOULD_DROP, bytes);
		return XDP_PASS;
	}
	return action;
}

#endif
