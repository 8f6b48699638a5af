// SPDX-License-Identifier: GPL-2.0
/* A packet's connection state from the kernel's conntrack, as docs/semantics.md describes
 * (Connection state): which packets are tracked, decided from the frame alone, then one
 * bpf_xdp_ct_lookup of the packet's tuple, or of the embedded packet's for an ICMP error.
 * The including program defines FWC_CT before fwc_parse.h, which then records the L4 offset. */
#ifndef FWC_CT_H
#define FWC_CT_H

#include "fwc_bpf.h"
#include "fwc_parse.h"

/* nftables' ct state bits, as compiler/policy/ir.py CT_STATES; UNTRACKED matches no rule */
#define FWC_CT_INVALID 0x01
#define FWC_CT_ESTABLISHED 0x02
#define FWC_CT_RELATED 0x04
#define FWC_CT_NEW 0x08
#define FWC_CT_UNTRACKED 0x80

#define FWC_CT_DIR_REPLY 1       /* IP_CT_DIR_REPLY */
#define FWC_IPS_EXPECTED 0x1     /* IPS_EXPECTED: the connection an expectation foresaw */
#define FWC_IPS_SEEN_REPLY 0x2   /* IPS_SEEN_REPLY: packets went both ways */
#define FWC_CURRENT_NETNS (-1)   /* BPF_F_CURRENT_NETNS */
#define FWC_CT_MAX_L4OFF 0x7fff

/* The kernel's types, as the kfuncs take them; nf_conn is read through CO-RE, so only the
 * field fwc reads is declared and its offset comes from the running kernel's BTF. */
struct bpf_sock_tuple {
	union {
		struct {
			__be32 saddr;
			__be32 daddr;
			__be16 sport;
			__be16 dport;
		} ipv4;
		struct {
			__be32 saddr[4];
			__be32 daddr[4];
			__be16 sport;
			__be16 dport;
		} ipv6;
	};
};

struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};

struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

/* ICMPv4 destination unreachable, source quench, redirect, time exceeded, parameter problem;
 * ICMPv6 destination unreachable, packet too big, time exceeded, parameter problem. */
static __fwc_inline int fwc_ct_icmp_error(const struct fwc_pkt *pk)
{
	if (pk->family == 4 && pk->proto == FWC_PROTO_ICMP)
		return pk->icmp_type == 3 || pk->icmp_type == 4 || pk->icmp_type == 5 ||
		       pk->icmp_type == 11 || pk->icmp_type == 12;
	if (pk->family == 6 && pk->proto == FWC_PROTO_ICMPV6)
		return pk->icmp_type >= 1 && pk->icmp_type <= 4;
	return 0;
}

/* The packet's own tuple (TCP or UDP, ports parsed); its size. */
static __fwc_inline __u32 fwc_ct_own_tuple(const struct fwc_pkt *pk, struct bpf_sock_tuple *t)
{
	if (pk->family == 4) {
		t->ipv4.saddr = __builtin_bswap32(pk->src4);
		t->ipv4.daddr = __builtin_bswap32(pk->dst4);
		t->ipv4.sport = __builtin_bswap16(pk->sport);
		t->ipv4.dport = __builtin_bswap16(pk->dport);
		return sizeof(t->ipv4);
	}
	t->ipv6.saddr[0] = __builtin_bswap32((__u32)(pk->src6_hi >> 32));
	t->ipv6.saddr[1] = __builtin_bswap32((__u32)pk->src6_hi);
	t->ipv6.saddr[2] = __builtin_bswap32((__u32)(pk->src6_lo >> 32));
	t->ipv6.saddr[3] = __builtin_bswap32((__u32)pk->src6_lo);
	t->ipv6.daddr[0] = __builtin_bswap32((__u32)(pk->dst6_hi >> 32));
	t->ipv6.daddr[1] = __builtin_bswap32((__u32)pk->dst6_hi);
	t->ipv6.daddr[2] = __builtin_bswap32((__u32)(pk->dst6_lo >> 32));
	t->ipv6.daddr[3] = __builtin_bswap32((__u32)pk->dst6_lo);
	t->ipv6.sport = __builtin_bswap16(pk->sport);
	t->ipv6.dport = __builtin_bswap16(pk->dport);
	return sizeof(t->ipv6);
}

/* An ICMP error's embedded packet: its tuple and protocol, or 0 when it carries none fwc can
 * ask about. The bytes must lie inside the frame; the embedded packet's own lengths are not
 * read (an error quotes only the start of the packet it is about). */
static __fwc_inline __u32 fwc_ct_inner_tuple(const __u8 *data, const __u8 *data_end,
					     const struct fwc_pkt *pk, struct bpf_sock_tuple *t,
					     __u8 *proto)
{
	__u32 off = pk->l4off;
	const __u8 *p, *q;
	__u32 ihl;

	/* the verifier tracks packet offsets only below 64 KiB; an XDP frame's data is shorter */
	if (off > FWC_CT_MAX_L4OFF)
		return 0;
	p = data + off + 8;
	if (pk->family == 4) {
		if (p + 20 > data_end || (p[0] >> 4) != 4)
			return 0;
		ihl = (__u32)(p[0] & 0x0f) * 4;
		if (ihl < 20 || (p[9] != FWC_PROTO_TCP && p[9] != FWC_PROTO_UDP))
			return 0;
		if (fwc_be16(p + 6) & 0x1fff)
			return 0;
		q = p + ihl;
		if (q + 4 > data_end)
			return 0;
		*proto = p[9];
		__builtin_memcpy(&t->ipv4.saddr, p + 12, 4);
		__builtin_memcpy(&t->ipv4.daddr, p + 16, 4);
		__builtin_memcpy(&t->ipv4.sport, q, 2);
		__builtin_memcpy(&t->ipv4.dport, q + 2, 2);
		return sizeof(t->ipv4);
	}
	if (p + 44 > data_end || (p[0] >> 4) != 6)
		return 0;
	if (p[6] != FWC_PROTO_TCP && p[6] != FWC_PROTO_UDP)
		return 0;
	*proto = p[6];
	__builtin_memcpy(t->ipv6.saddr, p + 8, 16);
	__builtin_memcpy(t->ipv6.daddr, p + 24, 16);
	__builtin_memcpy(&t->ipv6.sport, p + 40, 2);
	__builtin_memcpy(&t->ipv6.dport, p + 42, 2);
	return sizeof(t->ipv6);
}

/* One conntrack lookup; a subprogram, so that a policy with many state rules carries it once. */
static __attribute__((noinline)) __u8 fwc_ct_lookup(struct xdp_md *ctx, const struct fwc_pkt *pk)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
	struct bpf_sock_tuple t = {};
	struct bpf_ct_opts opts = {};
	struct nf_conn *ct;
	unsigned long status;
	__u32 size = 0;
	__u8 proto = 0, dir;
	int error = 0;

	if (!pk->l4)
		return FWC_CT_UNTRACKED;
	if (pk->proto == FWC_PROTO_TCP || pk->proto == FWC_PROTO_UDP) {
		proto = pk->proto;
		size = fwc_ct_own_tuple(pk, &t);
	} else if (fwc_ct_icmp_error(pk)) {
		error = 1;
		size = fwc_ct_inner_tuple(data, data_end, pk, &t, &proto);
	}
	if (!size)
		return FWC_CT_UNTRACKED;
	opts.netns_id = FWC_CURRENT_NETNS;
	opts.l4proto = proto;
	ct = bpf_xdp_ct_lookup(ctx, &t, size, &opts, sizeof(opts));
	if (!ct)
		return error ? FWC_CT_INVALID : FWC_CT_NEW;
	status = ct->status;
	dir = opts.dir;
	bpf_ct_release(ct);
	if (error)
		return FWC_CT_RELATED;
	if (dir == FWC_CT_DIR_REPLY || (status & FWC_IPS_SEEN_REPLY))
		return FWC_CT_ESTABLISHED;
	if (status & FWC_IPS_EXPECTED)
		return FWC_CT_RELATED;
	return FWC_CT_NEW;
}

/* The packet's state: looked up the first time a rule asks, then read from the packet. */
static __fwc_inline __u8 fwc_ct_state(struct xdp_md *ctx, struct fwc_pkt *pk)
{
	if (!pk->ct_state)
		pk->ct_state = fwc_ct_lookup(ctx, pk);
	return pk->ct_state;
}

#endif
