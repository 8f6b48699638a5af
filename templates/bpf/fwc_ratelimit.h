// SPDX-License-Identifier: GPL-2.0
/* Rate limiting as docs/semantics.md describes: GCRA, one theoretical arrival time per rule and source. */
#ifndef FWC_RATELIMIT_H
#define FWC_RATELIMIT_H

#include "fwc_bpf.h"
#include "fwc_parse.h"

/* Attempts at the compare-and-swap before the packet counts as finding no token. */
#define FWC_RL_TRIES 4

/* An IPv4 source sits in addr_lo with addr_hi 0; the family keeps it apart from ::a.b.c.d. */
struct fwc_bucket_key {
	__u32 rule;
	__u32 family;
	__u64 addr_hi;
	__u64 addr_lo;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FWC_RL_BUCKETS);
	__type(key, struct fwc_bucket_key);
	__type(value, __u64);
} fwc_buckets SEC(".maps");

/*
 * 1 when the packet takes a token from its bucket, 0 when it finds none.
 * The value is the bucket's theoretical arrival time (TAT, ns of CLOCK_MONOTONIC):
 * a packet at `now` conforms when TAT - now <= tolerance, and then moves TAT to
 * max(TAT, now) + interval. Each CPU updates the TAT with a compare-and-swap, so
 * two CPUs never both spend the same token; a CPU that loses the race re-reads
 * and decides again.
 */
static __attribute__((noinline)) int fwc_rate_take(__u32 rule, const struct fwc_pkt *pk,
						    __u64 interval, __u64 tolerance)
{
	struct fwc_bucket_key key = {.rule = rule, .family = pk->family};
	__u64 now = bpf_ktime_get_ns();
	__u64 old, tat, fresh;
	__u64 *slot;

	if (pk->family == 4) {
		key.addr_lo = pk->src4;
	} else {
		key.addr_hi = pk->src6_hi;
		key.addr_lo = pk->src6_lo;
	}
	for (int i = 0; i < FWC_RL_TRIES; i++) {
		slot = bpf_map_lookup_elem(&fwc_buckets, &key);
		if (!slot) {
			fresh = now + interval;
			if (bpf_map_update_elem(&fwc_buckets, &key, &fresh, BPF_NOEXIST) == 0)
				return 1;
			continue;
		}
		old = *(volatile __u64 *)slot;
		tat = old < now ? now : old;
		if (tat - now > tolerance)
			return 0;
		if (__sync_val_compare_and_swap(slot, old, tat + interval) == old)
			return 1;
	}
	return 0;
}

#endif
