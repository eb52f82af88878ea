// SPDX-License-Identifier: GPL-2.0
/* TCP lifecycle probes: every TCP socket's open, close and failed connect,
 * with its owner keys (cgroup v2 id, netns inode) and the kernel's own byte
 * counters, sent to userspace over one ring buffer (closes the ring had no
 * room for wait in the pending_closes map). */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "podtap.h"
#include "shared_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Lifecycle events for the agent; userspace sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Close and failed-connect events the ring buffer had no room for, by
 * connection id; the agent drains it on every poll and applies them in
 * timestamp order with the ring's records, so closes survive a full ring. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PODTAP_PENDING_CLOSES);
	__type(key, __u64);
	__type(value, struct podtap_tcp_event);
} pending_closes SEC(".maps");

static __always_inline void fill_addresses(struct podtap_tcp_event *e, struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* Before Linux 5.15, sock_cgroup_data was a union whose `val` holds the
 * cgroup pointer while its lowest bit (is_data) is clear. */
struct sock_cgroup_data___pre_5_15 {
	__u64 val;
} __attribute__((preserve_access_index));

struct sock___pre_5_15 {
	struct sock_cgroup_data___pre_5_15 sk_cgrp_data;
} __attribute__((preserve_access_index));

/* The cgroup v2 id of the socket's cgroup, whichever layout the kernel has. */
static __always_inline __u64 sock_cgroup_id(struct sock *sk)
{
	struct cgroup *cg;
	__u64 val;

	if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup)) {
		cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	} else {
		val = BPF_CORE_READ((struct sock___pre_5_15 *)sk, sk_cgrp_data.val);
		cg = val & 1 ? NULL : (struct cgroup *)val;
	}
	return cg ? BPF_CORE_READ(cg, kn, id) : 0;
}

static __always_inline void fill_owner(struct podtap_tcp_event *e, struct sock *sk)
{
	/* Both keys are read from the socket, not from the current task: passive
	 * opens complete in softirq, where "current" is whoever was interrupted. */
	e->netns_ino = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	e->cgroup_id = sock_cgroup_id(sk);
}

static __always_inline void fill_counters(struct podtap_tcp_event *e, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	/* tcp_sock fields need CO-RE reads even from tp_btf: the verifier rejects
	 * a direct dereference of the casted pointer. */
	e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	e->bytes_received = BPF_CORE_READ(tp, bytes_received);
}

static __always_inline void on_established(struct sock *sk, int oldstate, __u64 cookie)
{
	struct podtap_tcp_event *e;
	struct podtap_sock_info so = {};
	__u64 key = (__u64)sk;

	so.conn_id = cookie;
	so.open_ns = bpf_ktime_get_ns();
	so.direction = oldstate == TCP_SYN_SENT ? PODTAP_DIR_OUTBOUND : PODTAP_DIR_INBOUND;
	so.base_acked = BPF_CORE_READ((struct tcp_sock *)sk, bytes_acked);
	so.base_received = BPF_CORE_READ((struct tcp_sock *)sk, bytes_received);
	if (bpf_map_update_elem(&socks, &key, &so, BPF_ANY))
		count_drop(PODTAP_DROP_SOCKMAP_FULL);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(PODTAP_DROP_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = PODTAP_EV_TCP_OPEN;
	e->ts_ns = so.open_ns;
	e->open_ns = so.open_ns;
	e->conn_id = cookie;
	e->direction = so.direction;
	e->old_state = oldstate;
	e->base_acked = so.base_acked;
	e->base_received = so.base_received;
	e->bytes_acked = so.base_acked;
	e->bytes_received = so.base_received;
	fill_addresses(e, sk);
	fill_owner(e, sk);
	bpf_ringbuf_submit(e, 0);
}

/* The common path is one ring buffer copy; only when the ring is full is the
 * event parked in pending_closes (a real loss only when that is full too). */
static __always_inline void deliver_close(struct podtap_tcp_event *e)
{
	if (!bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		return;
	/* Parked before it is counted: the agent drains pending_closes when
	 * this count moves, so the entry is there by the time it looks. */
	if (bpf_map_update_elem(&pending_closes, &e->conn_id, e, BPF_NOEXIST))
		count_drop(PODTAP_DROP_CLOSE_MAP_FULL);
	count_drop(PODTAP_DROP_RINGBUF_FULL);
}

static __always_inline void on_close(struct sock *sk, int oldstate, __u64 cookie)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct podtap_tcp_event e = {};
	struct podtap_sock_info *so;
	__u64 key = (__u64)sk;

	e.ts_ns = bpf_ktime_get_ns();
	e.old_state = oldstate;
	e.sk_err = BPF_CORE_READ(sk, sk_err);
	fill_addresses(&e, sk);
	fill_owner(&e, sk);
	fill_counters(&e, sk);

	if (oldstate == TCP_SYN_SENT) {
		e.kind = PODTAP_EV_TCP_CONNECT_FAIL;
		e.conn_id = cookie;
		e.direction = PODTAP_DIR_OUTBOUND;
		deliver_close(&e);
		return;
	}

	e.kind = PODTAP_EV_TCP_CLOSE;
	so = bpf_map_lookup_elem(&socks, &key);
	if (so) {
		e.conn_id = so->conn_id;
		e.open_ns = so->open_ns;
		e.direction = so->direction;
		e.base_acked = so->base_acked;
		e.base_received = so->base_received;
	} else {
		e.conn_id = cookie;
		e.flags |= PODTAP_F_UNTRACKED;
	}
	/* tcp_fin() sets SOCK_DONE before any state change it causes, and the
	 * FIN it took advanced rcv_nxt, so bytes_received holds one extra byte. */
	if (BPF_CORE_READ(sk, __sk_common.skc_flags) & (1UL << SOCK_DONE))
		e.flags |= PODTAP_F_FIN_RECEIVED;
	/* Our FIN takes one sequence number (write_seq was bumped when it was
	 * queued); once snd_una reaches write_seq it is counted in bytes_acked. */
	if ((oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING ||
	     oldstate == TCP_LAST_ACK) &&
	    BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		e.flags |= PODTAP_F_FIN_ACKED;
	deliver_close(&e);
	if (so)
		bpf_map_update_elem(&closed_socks, &key, &so->conn_id, BPF_ANY);
	bpf_map_delete_elem(&socks, &key);
}

static __always_inline void on_state_change(struct sock *sk, int oldstate, int newstate,
					    __u64 cookie)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	if (newstate == TCP_ESTABLISHED &&
	    (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV))
		on_established(sk, oldstate, cookie);
	else if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN && oldstate != TCP_CLOSE &&
		 oldstate != TCP_SYN_RECV)
		on_close(sk, oldstate, cookie);
	else if (newstate == TCP_CLOSE && oldstate == TCP_SYN_RECV) {
		/* A child that never reached ESTABLISHED was never counted open. */
		__u64 key = (__u64)sk;

		bpf_map_delete_elem(&socks, &key);
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(podtap_tcp_state_btf, struct sock *sk, int oldstate, int newstate)
{
	/* The cookie is the identity sock_diag reports too, which lets the agent
	 * read live byte counters of a connection without another key. */
	on_state_change(sk, oldstate, newstate, bpf_get_socket_cookie(sk));
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int podtap_tcp_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	/* Without tp_btf the cookie helper is not allowed here; the cookie exists
	 * only if something asked for it before. Otherwise the connection gets an
	 * id of its own, from the time and CPU it was seen on, in a range cookies
	 * (counters from 1) never reach: not the socket's address, which the next
	 * socket often gets at once while the agent still holds the last one's
	 * close (their data was then counted as unmatched). */
	cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!cookie)
		cookie = PODTAP_SYNTH_ID_BIT | ((bpf_ktime_get_ns() << 4) & (PODTAP_SYNTH_ID_BIT - 1)) |
			 (bpf_get_smp_processor_id() & 15);
	on_state_change(sk, ctx->oldstate, ctx->newstate, cookie);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
