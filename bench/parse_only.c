/* Baseline for bench_rules.py: the constants program's parser and counter, and no rules. */
#define FWC_SLOT_DEFAULT 0
#define FWC_SLOT_MALFORMED 1
#define FWC_SLOT_NON_IP 2
#define FWC_SLOT_WOULD_DROP 3
#define FWC_SLOT_COUNT 4
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
	__u64 bytes = (__u64)(data_end - data);
	struct fwc_pkt pk = {};

	switch (fwc_parse(data, data_end, &pk)) {
	case FWC_CLASS_NON_IP:
		fwc_count(FWC_SLOT_NON_IP, bytes);
		return XDP_PASS;
	case FWC_CLASS_MALFORMED:
		return fwc_finish(FWC_SLOT_MALFORMED, XDP_PASS, bytes);
	}
	/* Keeps every parsed field live, as the rule blocks would. */
	fwc_publish(&pk);
	return fwc_finish(FWC_SLOT_DEFAULT, XDP_PASS, bytes);
}
