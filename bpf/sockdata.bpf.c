// SPDX-License-Identifier: GPL-2.0
/* Socket data probes: for every read/write-family syscall on a TCP socket the
 * lifecycle program tracks, the byte count and the first bytes of the buffer,
 * until the agent's verdict says the connection is not worth capturing. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "podtap.h"
#include "shared_maps.h"

/* Set by the agent before load. */
const volatile __u32 prefix_len = 256; /* default bytes captured per syscall */
const volatile __u32 self_tgid = 0;    /* the agent's own syscalls are not traffic */
const volatile __u64 wakeup_bytes = 1 << 20; /* wake the agent once this much is queued */

/* Per connection id, written by the agent: PODTAP_VERDICT_STOP, or a capture
 * length other than prefix_len (larger for HTTP/2 header blocks). LRU: a
 * verdict the agent forgot to delete ages out instead of filling the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, __u32);
} verdicts SEC(".maps");

/* Payload records; userspace sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} payload_events SEC(".maps");

/* Scratch space to build a record before copying its used part out: a
 * 4 KiB record does not fit on the BPF stack. The slack lets the verifier
 * see an offset below MAX plus a length masked to 2 * MAX - 1 stay inside
 * the map value. */
struct payload_scratch {
	struct podtap_payload_event ev;
	__u8 slack[2 * PODTAP_PAYLOAD_MAX];
};

/* iovecs gathered into the prefix: writev'd HTTP/2 frames are often one
 * frame (or frame header) per iovec, so the first alone loses the stream;
 * gRPC's C core sends a first request as some 26 iovecs. */
#define MAX_IOVECS 32

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct payload_scratch);
} scratch SEC(".maps");

enum buf_kind {
	BUF_PLAIN = 0,  /* read/write/recvfrom/sendto: a buffer pointer */
	BUF_IOVEC = 1,  /* readv/writev: an iovec array */
	BUF_MSGHDR = 2, /* recvmsg/sendmsg: a user_msghdr */
	BUF_NONE = 3,   /* sendfile: bytes only */
};

/* What the exit needs from the entry of a syscall on a tracked socket, by
 * thread. */
struct io_args {
	__u64 conn_id;
	__u64 buf;
	__u64 iovcnt; /* readv/writev */
	__u8 kind;
	__u8 dir;
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct io_args);
} inflight SEC(".maps");

/* The struct sock behind a file descriptor of the current task, or NULL. A
 * file that is not a socket fails the back-pointer check, and a socket that
 * is not tracked is not a key of `socks`, so both cost one lookup. */
static __always_inline struct sock *sock_of_fd(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds;
	struct file *file;
	struct socket *sock;
	unsigned int max_fds;

	max_fds = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

/* Entry does the socket lookup, so that the common case, a read or write on
 * something that is not a tracked TCP socket, costs no map update at all. */
static __always_inline int on_enter(__s32 fd, __u64 buf, __u64 iovcnt, __u8 kind, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct podtap_sock_info *info;
	struct io_args a = {};
	struct sock *sk;
	__u64 key;

	if ((__u32)(id >> 32) == self_tgid || fd < 0)
		return 0;
	sk = sock_of_fd(fd);
	if (!sk)
		return 0;
	key = (__u64)sk;
	info = bpf_map_lookup_elem(&socks, &key);
	if (!info)
		return 0;
	a.conn_id = info->conn_id;
	a.buf = buf;
	a.iovcnt = iovcnt;
	a.kind = kind;
	a.dir = dir;
	if (bpf_map_update_elem(&inflight, &id, &a, BPF_ANY))
		count_drop(PODTAP_DROP_SYSCALL_MAP_FULL);
	return 0;
}

/* Copies up to `want` bytes from a user iovec array into dst; returns how
 * many. Bytes of an iovec that cannot be read end the copy. */
static __always_inline __u64 copy_iovecs(__u8 *dst, const struct iovec *uiov, __u64 iovcnt,
					 __u64 want)
{
	struct iovec iov;
	__u64 off = 0, n;

	for (int i = 0; i < MAX_IOVECS; i++) {
		if (i >= iovcnt || off >= want)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), &uiov[i]))
			break;
		n = iov.iov_len;
		if (n > want - off)
			n = want - off;
		/* off < want <= MAX and n <= MAX: the masks state that for the
		 * verifier, which cannot follow the comparisons above. */
		barrier_var(off);
		off &= PODTAP_PAYLOAD_MAX - 1;
		barrier_var(n);
		n &= PODTAP_PAYLOAD_MAX * 2 - 1;
		if (n && bpf_probe_read_user(dst + off, n, iov.iov_base))
			break;
		off += n;
	}
	return off;
}

/* Copies the first `want` bytes the syscall moved into dst; returns how many. */
static __always_inline __u64 copy_prefix(__u8 *dst, struct io_args *a, __u64 want)
{
	struct user_msghdr msg = {};

	switch (a->kind) {
	case BUF_PLAIN:
		barrier_var(want);
		want &= PODTAP_PAYLOAD_MAX * 2 - 1;
		if (want && bpf_probe_read_user(dst, want, (void *)a->buf))
			return 0; /* paged-out buffer: bytes counted, prefix lost */
		return want;
	case BUF_IOVEC:
		return copy_iovecs(dst, (const struct iovec *)a->buf, a->iovcnt, want);
	case BUF_MSGHDR:
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a->buf))
			return 0;
		return copy_iovecs(dst, msg.msg_iov, msg.msg_iovlen, want);
	}
	return 0;
}

static __always_inline int on_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct podtap_payload_event *e;
	struct payload_scratch *scr;
	struct io_args *a;
	__u32 zero = 0, want;
	__u64 n, flags;
	__u32 *verdict;

	a = bpf_map_lookup_elem(&inflight, &id);
	if (!a)
		return 0;
	if (ret <= 0)
		goto out;

	want = prefix_len;
	verdict = bpf_map_lookup_elem(&verdicts, &a->conn_id);
	if (verdict) {
		if (*verdict == PODTAP_VERDICT_STOP)
			goto out;
		want = *verdict;
	}
	scr = bpf_map_lookup_elem(&scratch, &zero);
	if (!scr)
		goto out;
	e = &scr->ev;
	e->kind = PODTAP_EV_PAYLOAD;
	e->dir = a->dir;
	e->ts_ns = bpf_ktime_get_ns();
	e->conn_id = a->conn_id;
	e->total_len = ret;
	n = want;
	if ((__u64)ret < n)
		n = ret; /* never more than the syscall moved */
	if (n > PODTAP_PAYLOAD_MAX)
		n = PODTAP_PAYLOAD_MAX;
	n = copy_prefix(e->data, a, n);
	/* The HTTP/2 client preface: its connection needs whole header blocks
	 * from this very syscall on (a gRPC client writes preface, SETTINGS and
	 * its first request in one go), before the agent's verdict could come. */
	if (!verdict && n >= 4 && e->data[0] == 'P' && e->data[1] == 'R' && e->data[2] == 'I' &&
	    e->data[3] == ' ') {
		__u32 h2 = PODTAP_PAYLOAD_MAX;

		bpf_map_update_elem(&verdicts, &a->conn_id, &h2, BPF_ANY);
		if ((__u64)ret > n) {
			n = ret < PODTAP_PAYLOAD_MAX ? ret : PODTAP_PAYLOAD_MAX;
			n = copy_prefix(e->data, a, n);
		}
	}
	barrier_var(n);
	n &= PODTAP_PAYLOAD_MAX * 2 - 1;
	if (n > PODTAP_PAYLOAD_MAX)
		n = PODTAP_PAYLOAD_MAX;
	e->captured = n;
	/* A wakeup per record costs more than the record itself at high rates:
	 * the agent drains this ring on its own clock and is woken only when
	 * the backlog grows. */
	flags = bpf_ringbuf_query(&payload_events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
			? BPF_RB_FORCE_WAKEUP
			: BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&payload_events, e, offsetof(struct podtap_payload_event, data) + n,
			       flags))
		count_drop(PODTAP_DROP_PAYLOAD_RINGBUF_FULL);
out:
	bpf_map_delete_elem(&inflight, &id);
	return 0;
}

#define MSG_PEEK 2

/* flags_arg: which argument holds recv flags (-1: none). A peek leaves the
 * bytes in the socket to be read again, so it is not traffic: counting it
 * would feed the parser the same bytes twice (nginx peeks one byte of every
 * connection on a TLS port). */
#define ENTER(name, kind, dir, flags_arg)                                       \
	SEC("tracepoint/syscalls/sys_enter_" #name)                             \
	int podtap_enter_##name(struct trace_event_raw_sys_enter *ctx)          \
	{                                                                       \
		if (flags_arg >= 0 && (ctx->args[flags_arg & 7] & MSG_PEEK))    \
			return 0;                                               \
		return on_enter((__s32)ctx->args[0], ctx->args[1], ctx->args[2], \
				kind, dir);                                     \
	}                                                                       \
	SEC("tracepoint/syscalls/sys_exit_" #name)                              \
	int podtap_exit_##name(struct trace_event_raw_sys_exit *ctx)            \
	{                                                                       \
		return on_exit(ctx->ret);                                       \
	}

ENTER(read, BUF_PLAIN, PODTAP_DATA_RECV, -1)
ENTER(write, BUF_PLAIN, PODTAP_DATA_SEND, -1)
ENTER(readv, BUF_IOVEC, PODTAP_DATA_RECV, -1)
ENTER(writev, BUF_IOVEC, PODTAP_DATA_SEND, -1)
ENTER(recvfrom, BUF_PLAIN, PODTAP_DATA_RECV, 3)
ENTER(sendto, BUF_PLAIN, PODTAP_DATA_SEND, -1)
ENTER(recvmsg, BUF_MSGHDR, PODTAP_DATA_RECV, 2)
ENTER(sendmsg, BUF_MSGHDR, PODTAP_DATA_SEND, -1)

/* sendfile(out_fd, in_fd, ...): the socket is the first argument; the bytes
 * come from a file, so there is nothing to capture but their number. */
ENTER(sendfile64, BUF_NONE, PODTAP_DATA_SEND, -1)

char LICENSE[] SEC("license") = "GPL";
