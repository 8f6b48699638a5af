// SPDX-License-Identifier: GPL-2.0
/* BPF definitions for fwc programs: libbpf's helper declarations, and the few kernel UAPI
 * types fwc uses. The UAPI types are spelled out here because <linux/bpf.h> pulls in the
 * host's <asm/types.h>, which `clang -target bpf` does not find on multiarch systems. */
#ifndef FWC_BPF_H
#define FWC_BPF_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

/* The digest of what the manifest claims about this program (artifact/claims.py): a marker,
 * then four 64-bit words, each loaded into r0, which the code sets again before any use.
 * fw-load reads them back and refuses a manifest that claims anything else. */
#define FWC_CLAIM(word) asm volatile("r0 = " #word " ll" ::: "r0")
#define FWC_CLAIMS(a, b, c, d)                 \
	do {                                   \
		FWC_CLAIM(0x6677635f636c6d73); \
		FWC_CLAIM(a);                  \
		FWC_CLAIM(b);                  \
		FWC_CLAIM(c);                  \
		FWC_CLAIM(d);                  \
	} while (0)

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27

#define BPF_NOEXIST 1

#include <bpf/bpf_helpers.h>

#define __fwc_inline __always_inline

#endif
