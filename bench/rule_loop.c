/*
 * The baseline fwc is measured against: a rule-loop XDP firewall in the style of
 * gamemann's XDP-Firewall. Rules are structs in an ARRAY map, walked in order on
 * every packet until one matches. It parses with fwc's own parser
 * (templates/bpf/fwc_parse.h), so the only difference to fwc is how it classifies.
 *
 * Build switches (clang -D):
 *   RL_MAX_RULES   size of the rule map and bound of the loop (default 1024)
 *   RL_BPF_LOOP    1: walk with the bpf_loop() helper, whose callback the verifier
 *                  checks once; 0: a bounded for loop, which the verifier walks
 *                  iteration by iteration (this is where XDP-Firewall hits its cap)
 *   RL_INLINE      1: inline the per-rule step into the loop (faster per rule, but
 *                  the verifier's states multiply and it stops loading early)
 *   RL_PARSE_ONLY  1: parse the headers, count, pass; no rules (the floor of any
 *                  firewall built on this parser)
 */
#include "fwc_bpf.h"
#include "fwc_parse.h"

#ifndef RL_MAX_RULES
#define RL_MAX_RULES 1024
#endif
#ifndef RL_BPF_LOOP
#define RL_BPF_LOOP 0
#endif
#ifndef RL_PARSE_ONLY
#define RL_PARSE_ONLY 0
#endif
#ifndef RL_INLINE
#define RL_INLINE 0
#endif
#if RL_INLINE
#define RL_STEP static __fwc_inline
#else
#define RL_STEP __attribute__((noinline))
#endif

#define BPF_MAP_TYPE_ARRAY 2

/* rl_rule.flags */
#define RL_PORTS 0x01 /* the rule sets ports: TCP and UDP only */
#define RL_TCP_FLAGS 0x02
#define RL_ICMP_TYPE 0x04

/*
 * One rule: single-valued fields, as in XDP-Firewall. A policy rule with several
 * networks, port ranges or ICMP types becomes several of these (bench/rule_loop.py).
 * IPv4 addresses sit in the low 32 bits of *_lo; family 0 matches both families.
 */
struct rl_rule {
	__u64 src_hi;
	__u64 src_lo;
	__u64 src_mask_hi;
	__u64 src_mask_lo;
	__u64 dst_hi;
	__u64 dst_lo;
	__u64 dst_mask_hi;
	__u64 dst_mask_lo;
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u8 family;
	__u8 proto; /* 0: any */
	__u8 flags;
	__u8 tcp_set;
	__u8 tcp_clear;
	__u8 icmp_type;
	__u8 action; /* XDP_DROP or XDP_PASS */
	__u8 pad;
	__u32 rule_id;
	__u32 pad2;
};

struct rl_config {
	__u32 count;          /* rules in use, <= RL_MAX_RULES */
	__u32 default_action; /* XDP_DROP or XDP_PASS */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RL_MAX_RULES);
	__type(key, __u32);
	__type(value, struct rl_rule);
} rl_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rl_config);
} rl_config SEC(".maps");

/* Packets per verdict: 0 pass, 1 drop. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} rl_stats SEC(".maps");

char _license[] SEC("license") = "GPL";

static __fwc_inline int rl_verdict(int action)
{
	__u32 key = action == XDP_DROP;
	__u64 *n = bpf_map_lookup_elem(&rl_stats, &key);

	if (n)
		*n += 1;
	return action;
}

#if !RL_PARSE_ONLY
static __fwc_inline int rl_match(const struct rl_rule *r, const struct fwc_pkt *pk)
{
	__u64 s_hi = pk->family == 6 ? pk->src6_hi : 0;
	__u64 s_lo = pk->family == 6 ? pk->src6_lo : pk->src4;
	__u64 d_hi = pk->family == 6 ? pk->dst6_hi : 0;
	__u64 d_lo = pk->family == 6 ? pk->dst6_lo : pk->dst4;

	if (r->family && r->family != pk->family)
		return 0;
	if (r->proto && r->proto != pk->proto)
		return 0;
	if ((s_hi & r->src_mask_hi) != r->src_hi || (s_lo & r->src_mask_lo) != r->src_lo)
		return 0;
	if ((d_hi & r->dst_mask_hi) != r->dst_hi || (d_lo & r->dst_mask_lo) != r->dst_lo)
		return 0;
	if (r->flags & RL_PORTS) {
		if (!pk->l4 || (pk->proto != FWC_PROTO_TCP && pk->proto != FWC_PROTO_UDP))
			return 0;
		if (pk->sport < r->sport_lo || pk->sport > r->sport_hi)
			return 0;
		if (pk->dport < r->dport_lo || pk->dport > r->dport_hi)
			return 0;
	}
	if (r->flags & RL_TCP_FLAGS) {
		if (!pk->l4 || pk->proto != FWC_PROTO_TCP)
			return 0;
		if ((pk->tcp_flags & r->tcp_set) != r->tcp_set || (pk->tcp_flags & r->tcp_clear))
			return 0;
	}
	if (r->flags & RL_ICMP_TYPE) {
		if (!pk->l4 || (pk->proto != FWC_PROTO_ICMP && pk->proto != FWC_PROTO_ICMPV6))
			return 0;
		if (pk->icmp_type != r->icmp_type)
			return 0;
	}
	return 1;
}

/*
 * One step of the walk: 0 to go on, else the verdict (RL_END past the last rule).
 * As a global function the verifier checks it once on its own, and the loop around
 * it costs the verifier one branch per iteration. Inlined (RL_INLINE), the
 * matcher's branches multiply the verifier's states per iteration.
 */
#define RL_END 0x100
RL_STEP int rl_check(__u32 index, __u32 count, const struct fwc_pkt *pk)
{
	__u32 key = index;
	const struct rl_rule *r;

	if (!pk || index >= count)
		return RL_END;
	r = bpf_map_lookup_elem(&rl_rules, &key);
	if (!r)
		return RL_END;
	return rl_match(r, pk) ? r->action : 0;
}

struct rl_walk {
	const struct fwc_pkt *pk;
	__u32 count;
	int verdict;
};

static long rl_step(__u32 index, struct rl_walk *walk)
{
	walk->verdict = rl_check(index, walk->count, walk->pk);
	return walk->verdict != 0;
}
#endif

SEC("xdp")
int rl_xdp(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
	struct fwc_pkt pk = {};
	__u32 zero = 0;
	struct rl_config *cfg = bpf_map_lookup_elem(&rl_config, &zero);
	int action;

	if (!cfg)
		return XDP_ABORTED;
	action = cfg->default_action == XDP_DROP ? XDP_DROP : XDP_PASS;
	switch (fwc_parse(data, data_end, &pk)) {
	case FWC_CLASS_NON_IP:
		return rl_verdict(XDP_PASS);
	case FWC_CLASS_MALFORMED:
		return rl_verdict(action);
	}
#if RL_PARSE_ONLY
	return rl_verdict(XDP_PASS);
#else
	__u32 count = cfg->count < RL_MAX_RULES ? cfg->count : RL_MAX_RULES;
	int verdict = RL_END;
#if RL_BPF_LOOP
	struct rl_walk walk = {.pk = &pk, .count = count, .verdict = RL_END};

	bpf_loop(count, rl_step, &walk, 0);
	verdict = walk.verdict;
#else
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < RL_MAX_RULES; i++) {
		verdict = rl_check(i, count, &pk);
		if (verdict)
			break;
	}
#endif
	return rl_verdict(verdict == XDP_DROP || verdict == XDP_PASS ? verdict : action);
#endif
}
