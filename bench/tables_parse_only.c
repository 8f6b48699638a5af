/*
 * Baselines for bench_tables.py: the shared header parser and a counter, no classification.
 * fwc_xdp reads only the family, so clang drops the extraction of the other fields;
 * fwc_xdp_fields folds every parsed field into its verdict, so all of them are extracted,
 * as any classifier must. fwc_xdp_pass does nothing: its cost is BPF_PROG_TEST_RUN's own per
 * run, which every program's figure carries.
 */
#define FWC_SLOT_COUNT 4
#define FWC_SLOT_WOULD_DROP 3
#define FWC_DRY_RUN 0

#include "fwc_bpf.h"
#include "fwc_parse.h"
#include "fwc_counters.h"

char _license[] SEC("license") = "GPL";

SEC("xdp")
int fwc_xdp(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
	struct fwc_pkt pk = {};
	int parsed = fwc_parse(data, data_end, &pk);

	return fwc_finish((__u32)parsed, pk.family == 4 ? XDP_PASS : XDP_DROP,
			  (__u64)(data_end - data));
}

SEC("xdp")
int fwc_xdp_fields(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
	struct fwc_pkt pk = {};
	int parsed = fwc_parse(data, data_end, &pk);
	__u64 all = pk.src6_hi ^ pk.src6_lo ^ pk.dst6_hi ^ pk.dst6_lo ^ pk.src4 ^
		    ((__u64)pk.dst4 << 32) ^ pk.sport ^ ((__u64)pk.dport << 16) ^
		    ((__u64)pk.proto << 40) ^ ((__u64)pk.l4 << 48) ^ ((__u64)pk.tcp_flags << 56) ^
		    ((__u64)pk.icmp_type << 8);

	return fwc_finish((__u32)parsed, all == 0x5eed ? XDP_DROP : XDP_PASS,
			  (__u64)(data_end - data));
}

SEC("xdp")
int fwc_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
