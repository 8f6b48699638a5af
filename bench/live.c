/* Programs for bench_peers.py's live-frame harness (BPF_PROG_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES): a generator that writes the next frame of the mix and
 * redirects it into the sender's veth, and the receiver's reference programs that
 * only pass or only drop. */
#include "fwc_bpf.h"

#define BPF_MAP_TYPE_ARRAY 2
#define LIVE_MAX_FRAMES 1024
#define LIVE_FRAME_BYTES 320 /* the run's input frame is this long; each frame fits */

char _license[] SEC("license") = "GPL";

struct live_frame {
	__u32 len;
	__u8 data[LIVE_FRAME_BYTES];
};

struct live_config {
	__u32 ifindex;
	__u32 frames; /* how many of live_frames hold the mix */
	__u32 next;   /* the run is on one CPU: a plain counter */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct live_config);
} live_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LIVE_MAX_FRAMES);
	__type(key, __u32);
	__type(value, struct live_frame);
} live_frames SEC(".maps");

SEC("xdp")
int live_gen(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct live_config *cfg = bpf_map_lookup_elem(&live_config, &key);

	if (!cfg || !cfg->frames)
		return XDP_ABORTED;
	key = cfg->next;
	cfg->next = key + 1 < cfg->frames ? key + 1 : 0;
	struct live_frame *f = bpf_map_lookup_elem(&live_frames, &key);
	if (!f || f->len > LIVE_FRAME_BYTES || f->len < 14)
		return XDP_ABORTED;
	__u8 *data = (__u8 *)(long)ctx->data;
	if (data + LIVE_FRAME_BYTES > (__u8 *)(long)ctx->data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, f->data, LIVE_FRAME_BYTES);
	if (bpf_xdp_adjust_tail(ctx, (int)f->len - LIVE_FRAME_BYTES))
		return XDP_ABORTED;
	return bpf_redirect(cfg->ifindex, 0);
}

SEC("xdp")
int live_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int live_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}
