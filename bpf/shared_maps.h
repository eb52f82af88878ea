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

/* Sockets that reached CLOSE while tracked, keyed like `socks`, with their
 * connection id (the socket cookie). A process may still read what the peer
 * sent before its FIN after that (a client that half-closed its side reads
 * the reply after FIN_WAIT2 -> CLOSE), so the payload programs keep
 * reporting such reads; a later socket at the same address has another
 * cookie, which the payload programs check. LRU: nothing deletes entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} closed_socks SEC(".maps");

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
