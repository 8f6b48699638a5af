// SPDX-License-Identifier: GPL-2.0
/* Header parsing exactly as docs/semantics.md describes: L2, VLAN, IPv4, IPv6 extension headers, L4. */
#ifndef FWC_PARSE_H
#define FWC_PARSE_H

#include "fwc_bpf.h"

#define FWC_ETH_P_IPV4 0x0800
#define FWC_ETH_P_IPV6 0x86dd
#define FWC_ETH_P_8021Q 0x8100
#define FWC_ETH_P_8021AD 0x88a8

#define FWC_PROTO_ICMP 1
#define FWC_PROTO_TCP 6
#define FWC_PROTO_UDP 17
#define FWC_PROTO_ICMPV6 58

#define FWC_MAX_VLAN_TAGS 2
#define FWC_MAX_IPV6_EXT 8

enum fwc_class {
	FWC_CLASS_IP = 0,
	FWC_CLASS_MALFORMED = 1,
	FWC_CLASS_NON_IP = 2,
};

/* What the rules look at; addresses and ports in host byte order. */
struct fwc_pkt {
	__u64 src6_hi;
	__u64 src6_lo;
	__u64 dst6_hi;
	__u64 dst6_lo;
	__u32 src4;
	__u32 dst4;
	__u16 sport;
	__u16 dport;
	__u8 family;    /* 4 or 6 */
	__u8 proto;     /* IPv4 protocol or IPv6 final next-header */
	__u8 l4;        /* 1 when a TCP, UDP, ICMP or ICMPv6 header was parsed */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 ct_state;  /* the connection state once a rule asked (fwc_ct.h); 0 before */
	__u16 l4off;    /* the L4 header's offset in the frame, recorded only under FWC_CT */
	__u32 ifclass;  /* the ingress interface's class (fwc_ifaces.h); 0 when no rule asks */
};

/*
 * Rule blocks read the packet fields through a fence: fwc_publish() lets the
 * compiler see *pk escape once, and each fwc_fence() then makes it forget what
 * it knew about the fields, so every block reloads them. Without the fences
 * clang threads jumps across thousands of blocks that test the same fields,
 * and compile time and code size grow much faster than the number of rules.
 */
static __fwc_inline void fwc_publish(struct fwc_pkt *pk)
{
	__asm__ __volatile__("" : : "r"(pk) : "memory");
}

static __fwc_inline void fwc_fence(void)
{
	__asm__ __volatile__("" : : : "memory");
}

static __fwc_inline __u16 fwc_be16(const __u8 *p)
{
	return (__u16)(((__u16)p[0] << 8) | p[1]);
}

static __fwc_inline __u32 fwc_be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

static __fwc_inline __u64 fwc_be64(const __u8 *p)
{
	return ((__u64)fwc_be32(p) << 32) | fwc_be32(p + 4);
}

/*
 * Offsets are checked twice: as integers against the end of the IP packet
 * (the semantics), then as pointers against data_end (what the verifier needs;
 * the IP end never lies beyond data_end, so the second check never decides).
 */
static __fwc_inline int fwc_parse_l4(const __u8 *data, const __u8 *data_end, __u32 l4,
				     __u32 ip_end, struct fwc_pkt *pk)
{
	const __u8 *q = data + l4;

#ifdef FWC_CT
	pk->l4off = (__u16)l4;
#endif
	switch (pk->proto) {
	case FWC_PROTO_TCP:
		if (l4 + 20 > ip_end || q + 20 > data_end)
			return FWC_CLASS_MALFORMED;
		if ((q[12] >> 4) < 5)
			return FWC_CLASS_MALFORMED;
		pk->sport = fwc_be16(q);
		pk->dport = fwc_be16(q + 2);
		pk->tcp_flags = q[13];
		pk->l4 = 1;
		return FWC_CLASS_IP;
	case FWC_PROTO_UDP:
		if (l4 + 8 > ip_end || q + 8 > data_end)
			return FWC_CLASS_MALFORMED;
		pk->sport = fwc_be16(q);
		pk->dport = fwc_be16(q + 2);
		pk->l4 = 1;
		return FWC_CLASS_IP;
	case FWC_PROTO_ICMP:
	case FWC_PROTO_ICMPV6:
		if (l4 + 8 > ip_end || q + 8 > data_end)
			return FWC_CLASS_MALFORMED;
		pk->icmp_type = q[0];
		pk->l4 = 1;
		return FWC_CLASS_IP;
	default:
		return FWC_CLASS_IP;
	}
}

static __fwc_inline int fwc_parse_ipv4(const __u8 *data, const __u8 *data_end, __u32 off,
				       struct fwc_pkt *pk)
{
	const __u8 *p = data + off;
	__u32 avail = (__u32)(data_end - p);
	__u32 ihl, total;

	if (p + 20 > data_end)
		return FWC_CLASS_MALFORMED;
	if ((p[0] >> 4) != 4)
		return FWC_CLASS_MALFORMED;
	ihl = (__u32)(p[0] & 0x0f) * 4;
	if (ihl < 20 || ihl > avail)
		return FWC_CLASS_MALFORMED;
	total = fwc_be16(p + 2);
	if (total < ihl || total > avail)
		return FWC_CLASS_MALFORMED;
	pk->family = 4;
	pk->proto = p[9];
	pk->src4 = fwc_be32(p + 12);
	pk->dst4 = fwc_be32(p + 16);
	if (fwc_be16(p + 6) & 0x1fff)
		return FWC_CLASS_IP;
	return fwc_parse_l4(data, data_end, off + ihl, off + total, pk);
}

static __fwc_inline int fwc_parse_ipv6(const __u8 *data, const __u8 *data_end, __u32 off,
				       struct fwc_pkt *pk)
{
	const __u8 *p = data + off;
	__u32 avail = (__u32)(data_end - p);
	__u32 ip_end, l4, hdr_len;
	const __u8 *q;
	__u8 nh;

	if (p + 40 > data_end)
		return FWC_CLASS_MALFORMED;
	if ((p[0] >> 4) != 6)
		return FWC_CLASS_MALFORMED;
	if (40 + (__u32)fwc_be16(p + 4) > avail)
		return FWC_CLASS_MALFORMED;
	ip_end = off + 40 + fwc_be16(p + 4);
	pk->family = 6;
	pk->src6_hi = fwc_be64(p + 8);
	pk->src6_lo = fwc_be64(p + 16);
	pk->dst6_hi = fwc_be64(p + 24);
	pk->dst6_lo = fwc_be64(p + 32);
	nh = p[6];
	l4 = off + 40;

#pragma unroll
	for (int i = 0; i <= FWC_MAX_IPV6_EXT; i++) {
		if (nh != 0 && nh != 43 && nh != 60 && nh != 44)
			break;
		if (i == FWC_MAX_IPV6_EXT)
			return FWC_CLASS_MALFORMED;
		q = data + l4;
		if (l4 + 8 > ip_end || q + 8 > data_end)
			return FWC_CLASS_MALFORMED;
		if (nh == 44) {
			nh = q[0];
			l4 += 8;
			if (fwc_be16(q + 2) & 0xfff8) {
				pk->proto = nh;
				return FWC_CLASS_IP;
			}
			continue;
		}
		hdr_len = ((__u32)q[1] + 1) * 8;
		if (l4 + hdr_len > ip_end)
			return FWC_CLASS_MALFORMED;
		nh = q[0];
		l4 += hdr_len;
	}
	pk->proto = nh;
	return fwc_parse_l4(data, data_end, l4, ip_end, pk);
}

static __fwc_inline int fwc_parse(const __u8 *data, const __u8 *data_end, struct fwc_pkt *pk)
{
	__u32 off = 14;
	__u16 type;

	if (data + 14 > data_end)
		return FWC_CLASS_MALFORMED;
	type = fwc_be16(data + 12);
#pragma unroll
	for (int i = 0; i < FWC_MAX_VLAN_TAGS; i++) {
		if (type != FWC_ETH_P_8021Q && type != FWC_ETH_P_8021AD)
			break;
		if (data + off + 4 > data_end)
			return FWC_CLASS_MALFORMED;
		type = fwc_be16(data + off + 2);
		off += 4;
	}
	if (type == FWC_ETH_P_IPV4)
		return fwc_parse_ipv4(data, data_end, off, pk);
	if (type == FWC_ETH_P_IPV6)
		return fwc_parse_ipv6(data, data_end, off, pk);
	return FWC_CLASS_NON_IP;
}

#endif
