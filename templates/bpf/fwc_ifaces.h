// SPDX-License-Identifier: GPL-2.0
/* The ingress interface's class (docs/artifact.md, Interface classes): fw-load maps every
 * interface it attaches to, by ifindex, to the class of the policy's interface patterns its
 * name matches. An ifindex the map does not hold is class 0, which no pattern matches. */
#ifndef FWC_IFACES_H
#define FWC_IFACES_H

#include "fwc_bpf.h"

/* The including program defines FWC_IFACES_ENTRIES, FWC_IFACES_HASH_ENTRIES and
 * FWC_IFACE_CLASSES (how many classes it tells apart). */
/* ifindexes below FWC_IFACES_ENTRIES: an array, whose lookup the verifier inlines */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FWC_IFACES_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} fwc_ifaces SEC(".maps");

/* the others, in a namespace that has made thousands of interfaces */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FWC_IFACES_HASH_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} fwc_ifaces_hi SEC(".maps");

static __fwc_inline __u32 fwc_ifclass(const struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	const __u32 *cls;

	if (ifindex < FWC_IFACES_ENTRIES)
		cls = bpf_map_lookup_elem(&fwc_ifaces, &ifindex);
	else
		cls = bpf_map_lookup_elem(&fwc_ifaces_hi, &ifindex);

	/* a class beyond the program's is no class: fw-load never writes one */
	return cls && *cls < FWC_IFACE_CLASSES ? *cls : 0;
}

#endif
