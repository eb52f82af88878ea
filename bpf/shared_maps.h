/* Maps both BPF objects declare; the agent loads tcp.bpf.o first and makes
 * sockdata.bpf.o reuse these (bpf_map__reuse_fd), so there is one of each.
 * Included once per object, after vmlinux.h and podtap.h. */
#ifndef PODTAP_BPF_SHARED_MAPS_H
#define PODTAP_BPF_SHARED_MAPS_H

/* Tracked sockets, keyed by the struct sock address: unique while the socket
 * lives. Written by the lifecycle program at ESTABLISHED and deleted at
 * CLOSE; the payload programs read it to know which sockets are tracked.
 * Userspace may resize it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct podtap_sock_info);
} socks SEC(".maps");

/* Everything the kernel side fails to deliver, per CPU, by enum podtap_drop;
 * the agent serves the sums as podtap_* self metrics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PODTAP_DROP__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);

	if (n)
		*n += 1;
}

#endif /* PODTAP_BPF_SHARED_MAPS_H */
