/* Baseline for bench_tables.py: the shared header parser and a counter, no classification. */
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
