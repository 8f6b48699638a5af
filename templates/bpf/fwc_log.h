// SPDX-License-Identifier: GPL-2.0
/* Verdict events as docs/semantics.md describes: a ring buffer, capped per CPU per second. */
#ifndef FWC_LOG_H
#define FWC_LOG_H

#include "fwc_bpf.h"
#include "fwc_parse.h"

/* One verdict; addresses and ports in host byte order, an IPv4 address in the _lo half. */
struct fwc_event {
	__u64 time_ns; /* CLOCK_MONOTONIC */
	__u32 rule;
	__u8 action;  /* the policy's verdict: XDP_DROP or XDP_PASS */
	__u8 dry_run; /* 1: the program runs in dry-run, so a drop passed */
	__u8 family;
	__u8 proto;
	__u64 src_hi;
	__u64 src_lo;
	__u64 dst_hi;
	__u64 dst_lo;
	__u16 sport;
	__u16 dport;
	__u8 l4;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 pad;
};

struct fwc_log_window {
	__u64 start_ns;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FWC_EVENTS_SIZE);
} fwc_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fwc_log_window);
} fwc_log_window SEC(".maps");

/* Reports a verdict unless this CPU already sent FWC_LOG_RATE events in the current second. */
static __attribute__((noinline)) void fwc_log(__u32 rule, int action, const struct fwc_pkt *pk)
{
	__u32 zero = 0;
	struct fwc_log_window *w = bpf_map_lookup_elem(&fwc_log_window, &zero);
	__u64 now = bpf_ktime_get_ns();
	struct fwc_event ev = {};

	if (!w)
		return;
	/* Per-CPU value: only this CPU writes it, and XDP does not preempt itself. */
	if (now - w->start_ns >= 1000000000ULL) {
		w->start_ns = now;
		w->count = 0;
	}
	if (w->count >= FWC_LOG_RATE)
		return;
	w->count += 1;
	ev.time_ns = now;
	ev.rule = rule;
	ev.action = (__u8)action;
	ev.dry_run = FWC_DRY_RUN;
	ev.family = pk->family;
	ev.proto = pk->proto;
	if (pk->family == 4) {
		ev.src_lo = pk->src4;
		ev.dst_lo = pk->dst4;
	} else {
		ev.src_hi = pk->src6_hi;
		ev.src_lo = pk->src6_lo;
		ev.dst_hi = pk->dst6_hi;
		ev.dst_lo = pk->dst6_lo;
	}
	ev.sport = pk->sport;
	ev.dport = pk->dport;
	ev.l4 = pk->l4;
	ev.tcp_flags = pk->tcp_flags;
	ev.icmp_type = pk->icmp_type;
	bpf_ringbuf_output(&fwc_events, &ev, sizeof(ev), 0);
}

#endif
