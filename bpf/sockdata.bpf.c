// SPDX-License-Identifier: GPL-2.0
/* Socket data probes: for every read/write-family syscall on a TCP socket the
 * lifecycle program tracks, the byte count and the first bytes of the buffer,
 * until the agent's verdict says the connection is not worth capturing. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "compat.h"
#include "podtap.h"
#include "shared_maps.h"

#define AF_INET 2
#define AF_INET6 10

/* Set by the agent before load. */
const volatile __u32 prefix_len = 256; /* bytes captured per syscall (not HTTP/2) */
const volatile __u32 self_tgid = 0;    /* the agent's own syscalls are not traffic */
const volatile __u64 wakeup_bytes = 1 << 20; /* wake the agent once this much is queued */
/* The backlog is checked once every this many records per CPU: reading it
 * touches the consumer position the agent writes, a cache miss on every
 * record otherwise. The agent sizes it so that all CPUs together add at most
 * a quarter of the ring between checks. */
const volatile __u32 backlog_check_every = 1;

/* Per connection id: PODTAP_VERDICT_STOP (written by the agent: not a
 * protocol we parse), or PODTAP_VERDICT_H2 with the frame walk state
 * (written here on the client preface). LRU: a verdict the agent forgot to
 * delete ages out instead of filling the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct podtap_verdict);
} verdicts SEC(".maps");

/* Payload records; userspace sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} payload_events SEC(".maps");

/* One syscall's HTTP/2 frame walk: where it is in the syscall's bytes and
 * in its buffers, and the segments written to the record so far. Scalars
 * only: on kernels without bpf_loop it lives in the per-CPU scratch across
 * tail calls (a pointer stored in a map reads back as a number). */
struct h2_walk_pos {
	__u64 uiov;   /* BUF_IOVEC, BUF_MSGHDR: the user's iovec array */
	__u64 iovcnt;
	__u64 iov_next;  /* index of the next iovec to read */
	__u64 iov_start; /* syscall offset of the current buffer's first byte */
	__u64 iov_len;
	__u64 iov_base;
	__u64 off; /* syscall offset walked to */
	__u64 total;
	__u32 out;     /* bytes of e->data used */
	__u32 seg_hdr; /* where the open segment's header goes in e->data */
	__u64 seg_off; /* syscall offset of the open segment's first byte */
	__u32 seg_len; /* 0: no open segment */
	__u8 full;     /* the record ran out of room */
	__u8 kind;
	__u8 pad[2];
};

/* Scratch space to build a record before copying its used part out: a
 * 4 KiB record does not fit on the BPF stack. The slack lets the verifier
 * see an offset below MAX plus a length masked to 2 * MAX - 1 stay inside
 * the map value. */
struct payload_scratch {
	struct podtap_payload_event ev;
	__u8 slack[2 * PODTAP_PAYLOAD_MAX];
	__u32 records; /* emitted on this CPU: paces the backlog check */
	/* Never written: a zero the verifier cannot know (see h2_walk_begin). */
	__u32 zero;
	/* Kernels without bpf_loop: the syscall's walk across tail calls (the
	 * connection's verdict key, the direction's walk, calls taken). */
	struct h2_walk_pos pos;
	__u64 walk_key;
	__u32 walk_dir;
	__u32 walk_calls;
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
	__u64 sk;     /* the socks key, to mark the direction seen */
	__u8 kind;
	__u8 dir;
	__u8 first; /* no bytes moved in this direction before */
	__u8 pad[5];
};

/* By thread (compat.h): the exit program of every read/write-family syscall
 * on the node looks here. conn_id 0 means no syscall on a tracked socket is
 * in progress. */
PER_THREAD_MAP(inflight, struct io_args);

/* An SSL_read/SSL_write (or _ex, or SSL_do_handshake) in progress, by
 * thread: the plaintext buffer, and the connection once a syscall on a
 * tracked socket happens inside the call. After the call, `learn` says it
 * made no such syscall: the SSL object may use a memory BIO (below). */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 len_ptr; /* _ex forms: where the byte count is written */
	__u64 conn_id;
	__u8 dir;        /* enum podtap_data_dir; 0: a handshake, only learns the socket */
	__u8 active;     /* 0: no SSL call in progress on this thread */
	__u8 saw_socket; /* a syscall on a tracked socket happened inside the call */
	__u8 learn;      /* the call ended without one; cleared by the next such syscall */
	__u8 pad[4];
};

PER_THREAD_MAP(ssl_calls, struct ssl_call);

/* The connection of an SSL object. With OpenSSL's socket BIO (SSL_set_fd)
 * it is learned from the syscalls made inside its calls: OpenSSL may answer
 * an SSL_read from bytes it already holds, without a syscall. With a memory
 * BIO (Node.js: its TLSWrap moves the ciphertext through libuv) the calls
 * make no syscall; the first handshake flight an SSL call produces is then
 * written to the socket by the same thread right after the call, as the
 * thread's next syscall on a tracked socket: a send that is the socket's
 * first and starts with a TLS handshake record. That write names the
 * socket (from_flight); syscalls inside later calls of such an object are
 * not its own (Node runs JavaScript from OpenSSL's callbacks) and change
 * nothing. */
struct ssl_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

struct ssl_conn {
	__u64 conn_id;
	__u8 from_flight;
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, struct ssl_conn);
} ssl_conns SEC(".maps");

#define TLS_RECORD_HANDSHAKE 22

/* The first byte a send syscall's buffers hold, or -1. */
static __always_inline int first_sent_byte(__u64 buf, __u64 iovcnt, __u8 kind)
{
	struct user_msghdr msg;
	struct iovec iov;
	__u8 b;

	if (kind == BUF_MSGHDR) {
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)buf))
			return -1;
		buf = (__u64)msg.msg_iov;
		iovcnt = msg.msg_iovlen;
		kind = BUF_IOVEC;
	}
	if (kind == BUF_IOVEC) {
		if (!iovcnt || bpf_probe_read_user(&iov, sizeof(iov), (void *)buf) || !iov.iov_len)
			return -1;
		buf = (__u64)iov.iov_base;
	} else if (kind != BUF_PLAIN) {
		return -1;
	}
	if (bpf_probe_read_user(&b, sizeof(b), (void *)buf))
		return -1;
	return b;
}

/* A syscall on the tracked socket conn_id made by this thread: inside an
 * SSL call, it ties the SSL object to the socket (returns true: the bytes
 * are the call's TLS records); right after a call that made none, it may be
 * the SSL object's first handshake flight. */
static __always_inline bool ssl_socket_syscall(struct ssl_call *call, __u32 tgid, __u64 conn_id,
					       __u64 buf, __u64 iovcnt, __u8 kind, __u8 dir,
					       __u8 first)
{
	struct ssl_key k = {.ssl = call->ssl, .tgid = tgid};
	struct ssl_conn v = {.conn_id = conn_id}, *known;
	bool learn = call->learn;

	call->learn = 0;
	if (!call->active) {
		if (learn && dir == PODTAP_DATA_SEND && first &&
		    first_sent_byte(buf, iovcnt, kind) == TLS_RECORD_HANDSHAKE) {
			v.from_flight = 1;
			bpf_map_update_elem(&ssl_conns, &k, &v, BPF_ANY);
		}
		return false;
	}
	known = bpf_map_lookup_elem(&ssl_conns, &k);
	if (known && known->from_flight)
		return false;
	call->conn_id = conn_id;
	call->saw_socket = 1;
	bpf_map_update_elem(&ssl_conns, &k, &v, BPF_ANY);
	return true;
}

/* The connection id of a socket the lifecycle program tracks (*info: its
 * socks entry), or of one that closed while tracked and is still this very
 * socket (*info: NULL); 0 for any other socket. */
static __always_inline __u64 tracked_conn_id(struct sock *sk, struct podtap_sock_info **info)
{
	__u64 key = (__u64)sk, *closed;
	__u16 family;

	*info = bpf_map_lookup_elem(&socks, &key);
	if (*info)
		return (*info)->conn_id;
	/* An unconnected UDP socket is in TCP_CLOSE too: the protocol check
	 * spares it the lookup. */
	family = SK_FIELD(sk, __sk_common.skc_family);
	if (SK_FIELD(sk, __sk_common.skc_state) != TCP_CLOSE ||
	    (family != AF_INET && family != AF_INET6) || SK_FIELD(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	closed = bpf_map_lookup_elem(&closed_socks, &key);
	if (!closed || *closed != (__u64)SK_FIELD(sk, __sk_common.skc_cookie.counter))
		return 0;
	return *closed;
}

/* The syscall's arguments in *a when its fd is a TCP socket the lifecycle
 * program tracks and its bytes are not TLS records whose plaintext the SSL
 * probes capture; false for anything else. */
static __always_inline bool syscall_args(struct io_args *a, __s32 fd, __u64 buf, __u64 iovcnt,
					 __u8 kind, __u8 dir)
{
	struct podtap_sock_info *info;
	__u64 key, conn_id;
	struct ssl_call *call;
	struct sock *sk;
	__u32 tgid;
	__u8 first = 0;

	tgid = current_tgid();
	if (tgid == self_tgid || fd < 0)
		return false;
	sk = sock_of_fd(fd);
	if (!sk)
		return false;
	key = (__u64)sk;
	conn_id = tracked_conn_id(sk, &info);
	if (!conn_id)
		return false;
	if (info)
		first = !(info->data_seen & dir);
	call = THREAD_STATE(ssl_calls, struct ssl_call, false);
	/* TLS records of a read or write whose plaintext the SSL_read/SSL_write
	 * return probe captures. */
	if (call && (call->active || call->learn) &&
	    ssl_socket_syscall(call, tgid, conn_id, buf, iovcnt, kind, dir, first) && call->dir)
		return false;
	a->conn_id = conn_id;
	a->buf = buf;
	a->iovcnt = iovcnt;
	a->sk = key;
	a->kind = kind;
	a->dir = dir;
	a->first = first;
	return true;
}

/* Entry does the socket lookup, so that the common case, a read or write on
 * something that is not a tracked TCP socket, costs no map update at all. */
static __always_inline int on_enter(__s32 fd, __u64 buf, __u64 iovcnt, __u8 kind, __u8 dir)
{
	struct io_args args = {}, *a;

	if (!syscall_args(&args, fd, buf, iovcnt, kind, dir))
		return 0;
	a = THREAD_STATE(inflight, struct io_args, true);
	if (!a) {
		count_drop(PODTAP_DROP_SYSCALL_MAP_FULL);
		return 0;
	}
	*a = args;
	return 0;
}

/* Copying a user iovec array into a record, one iovec a step. */
struct iov_copy {
	__u8 *dst;
	const struct iovec *uiov;
	__u64 iovcnt;
	__u64 want;
	__u64 off; /* bytes copied so far */
};

static long copy_iovec_step(__u32 i, void *ctx)
{
	struct iov_copy *c = ctx;
	__u64 off = c->off, n;
	struct iovec iov;

	if (i >= c->iovcnt || off >= c->want)
		return 1;
	if (bpf_probe_read_user(&iov, sizeof(iov), &c->uiov[i]))
		return 1;
	n = iov.iov_len;
	if (n > c->want - off)
		n = c->want - off;
	/* off < want <= MAX and n <= MAX: the masks state that for the
	 * verifier, which cannot follow the comparisons above. */
	barrier_var(off);
	off &= PODTAP_PAYLOAD_MAX - 1;
	barrier_var(n);
	n &= PODTAP_PAYLOAD_MAX * 2 - 1;
	if (n && bpf_probe_read_user(c->dst + off, n, iov.iov_base))
		return 1;
	c->off = off + n;
	return 0;
}

/* Copies up to `want` bytes from a user iovec array into dst; returns how
 * many. Bytes of an iovec that cannot be read end the copy. */
static __always_inline __u64 copy_iovecs(__u8 *dst, const struct iovec *uiov, __u64 iovcnt,
					 __u64 want)
{
	struct iov_copy c = {.dst = dst, .uiov = uiov, .iovcnt = iovcnt, .want = want};

	LOOP(MAX_IOVECS, copy_iovec_step, &c);
	return c.off;
}

/* Copies the first `want` bytes the syscall moved into dst; returns how many. */
static __always_inline __u64 copy_prefix(__u8 *dst, struct io_args *a, __u64 want)
{
	const struct iovec *uiov = (const struct iovec *)a->buf;
	struct user_msghdr msg = {};
	__u64 iovcnt = a->iovcnt;

	if (a->kind == BUF_PLAIN) {
		barrier_var(want);
		want &= PODTAP_PAYLOAD_MAX * 2 - 1;
		if (want && bpf_probe_read_user(dst, want, (void *)a->buf))
			return 0; /* paged-out buffer: bytes counted, prefix lost */
		return want;
	}
	if (a->kind == BUF_NONE)
		return 0;
	if (a->kind == BUF_MSGHDR) {
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a->buf))
			return 0;
		uiov = msg.msg_iov;
		iovcnt = msg.msg_iovlen;
	}
	/* One copy for readv/writev and recvmsg/sendmsg: its unrolled loop is
	 * much of what the verifier follows in the exit program. */
	return copy_iovecs(dst, uiov, iovcnt, want);
}

#define H2_PREFACE_LEN 24 /* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */

/* The preface as three little-endian words: "PRI * HT", "TP/2.0\r\n",
 * "\r\nSM\r\n\r\n". data is the record's 8-byte aligned data[]. */
static __always_inline bool is_h2_preface(const __u8 *data, __u64 n)
{
	const __u64 *w = (const __u64 *)data;

	return n >= H2_PREFACE_LEN && w[0] == 0x5448202a20495250ULL &&
	       w[1] == 0x0a0d302e322f5054ULL && w[2] == 0x0a0d0a0d4d530a0dULL;
}
#define H2_FRAME_HEADER 9
/* One syscall's frame walk takes at most WALK_STEPS steps (compat.h; a
 * step: a frame header, a frame's bytes within one iovec, or moving to the
 * next iovec). */

/* What a walk step works on: the position, the record, and the
 * connection's walk state in its verdict. The position is inline where the
 * walk runs in one program (bpf_loop; a pointer to another stack slot
 * costs the verifier more states) and in the scratch otherwise. */
struct h2_walk_ctx {
	struct podtap_payload_event *e;
	struct podtap_h2_walk *st;
#if PODTAP_BPF_LOOP
	struct h2_walk_pos pos;
#define WPOS(wc) (&(wc)->pos)
#else
	struct h2_walk_pos *p;
#define WPOS(wc) ((wc)->p)
#endif
};

static __always_inline void h2_close_segment(struct h2_walk_ctx *wc)
{
	struct h2_walk_pos *w = WPOS(wc);
	struct podtap_segment seg = {};

	if (!w->seg_len)
		return;
	seg.offset = w->seg_off;
	seg.len = w->seg_len;
	bpf_probe_read_kernel(wc->e->data + (w->seg_hdr & (PODTAP_PAYLOAD_MAX - 1)), sizeof(seg),
			      &seg);
	w->seg_len = 0;
}

/* Appends n bytes the syscall moved at offset `at`, read from src (user
 * memory, or kernel memory when `kern`), to the record's segments. */
static __always_inline void h2_capture(struct h2_walk_ctx *wc, __u64 at, __u64 src, __u64 n,
				       bool kern)
{
	struct h2_walk_pos *w = WPOS(wc);
	__u32 out = w->out, room;

	if (!n || w->full)
		return;
	if (!w->seg_len || w->seg_off + w->seg_len != at) {
		h2_close_segment(wc);
		if (out + sizeof(struct podtap_segment) >= PODTAP_PAYLOAD_MAX) {
			w->full = 1;
			return;
		}
		w->seg_hdr = out;
		w->seg_off = at;
		out += sizeof(struct podtap_segment);
	}
	room = PODTAP_PAYLOAD_MAX - out;
	if (n > room) {
		n = room;
		w->full = 1;
	}
	barrier_var(out);
	out &= PODTAP_PAYLOAD_MAX - 1;
	barrier_var(n);
	n &= PODTAP_PAYLOAD_MAX * 2 - 1;
	if (kern ? bpf_probe_read_kernel(wc->e->data + out, n, (void *)src)
		 : bpf_probe_read_user(wc->e->data + out, n, (void *)src)) {
		w->full = 1; /* unreadable: what follows is not contiguous */
		return;
	}
	w->out = out + n;
	w->seg_len += n;
}

static __always_inline bool h2_frame_captured(__u8 type)
{
	/* HEADERS, SETTINGS, PUSH_PROMISE, GOAWAY, CONTINUATION */
	return type == 1 || type == 4 || type == 5 || type == 7 || type == 9;
}

WALK_FN h2_walk_step(__u32 i, void *ctx)
{
	struct h2_walk_ctx *wc = ctx;
	struct h2_walk_pos *w = WPOS(wc);
	struct podtap_h2_walk *st = wc->st;
	__u8 head[16] = {};
	struct iovec iov;
	__u64 n, src;

	if (w->off >= w->total)
		return 1;
	if (w->off >= w->iov_start + w->iov_len) {
		/* The next buffer of a readv/writev/recvmsg/sendmsg. */
		if (w->kind != BUF_IOVEC || w->iov_next >= w->iovcnt ||
		    bpf_probe_read_user(&iov, sizeof(iov), &((const struct iovec *)w->uiov)[w->iov_next & 1023])) {
			st->lost = 1;
			return 1;
		}
		w->iov_next++;
		w->iov_start += w->iov_len;
		w->iov_len = iov.iov_len;
		w->iov_base = (__u64)iov.iov_base;
		return 0;
	}
	n = w->total - w->off;
	if (n > w->iov_start + w->iov_len - w->off)
		n = w->iov_start + w->iov_len - w->off;
	src = w->iov_base + (w->off - w->iov_start);
	if (st->skip) {
		if (n > st->skip)
			n = st->skip;
		if (st->capture)
			h2_capture(wc, w->off, src, n, false);
		st->skip -= n;
		w->off += n;
		return 0;
	}
	/* A frame header, maybe the rest of one split across syscalls. */
	if (n > H2_FRAME_HEADER - st->head_have)
		n = H2_FRAME_HEADER - st->head_have;
	barrier_var(n);
	n &= 15;
	if (w->kind == BUF_NONE || !n || bpf_probe_read_user(head, n, (void *)src)) {
		st->lost = 1;
		return 1;
	}
	h2_capture(wc, w->off, (__u64)head, n, true);
	for (int k = 0; k < H2_FRAME_HEADER; k++) {
		__u32 at = st->head_have + k;

		if (k >= n)
			break;
		if (at >= sizeof(st->head))
			break;
		/* Kept in a register as masked: folded into the store's
		 * offset, 5.10's verifier bounds walk[dir].head + at one byte
		 * past the map value. */
		at &= 3;
		barrier_var(at);
		st->head[at] = head[k];
	}
	st->head_have += n;
	w->off += n;
	if (st->head_have >= H2_FRAME_HEADER) {
		st->skip = (__u32)st->head[0] << 16 | (__u32)st->head[1] << 8 | st->head[2];
		st->capture = h2_frame_captured(st->head[3]);
		st->head_have = 0;
	}
	return 0;
}

/* Starts a syscall's walk at *p: every frame header, and the payload of
 * every frame the agent reads (header blocks above all), wherever they lie
 * in the syscall's bytes; DATA payloads are skipped by their length. Sets
 * st->lost when the syscall's buffers cannot be read. */
static __always_inline void h2_walk_begin(struct payload_scratch *scr, struct h2_walk_pos *p,
					  struct podtap_h2_walk *st, struct io_args *a,
					  __u64 total)
{
	struct user_msghdr msg = {};

#if !PODTAP_BPF_LOOP
	__builtin_memset(p, 0, sizeof(*p)); /* in the scratch: the last walk's */
#endif
	/* The record's bookkeeping starts at zero, but read from memory the
	 * verifier cannot see into: verifiers before 6.7 check a bpf_loop
	 * callback as if it ran once, from these starting values, and hard-wire
	 * the branches that are not taken then (on 6.1 the record's room was
	 * never checked and segments overran it). */
	p->out = scr->zero;
	p->seg_len = scr->zero;
	p->seg_hdr = scr->zero;
	p->full = scr->zero;
	p->total = total;
	p->kind = a->kind;
	switch (a->kind) {
	case BUF_PLAIN:
		p->iov_base = a->buf;
		p->iov_len = total;
		break;
	case BUF_IOVEC:
		p->uiov = a->buf;
		p->iovcnt = a->iovcnt;
		break;
	case BUF_MSGHDR:
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a->buf)) {
			st->lost = 1;
			break;
		}
		p->kind = BUF_IOVEC;
		p->uiov = (__u64)msg.msg_iov;
		p->iovcnt = msg.msg_iovlen;
		break;
	case BUF_NONE:
		p->iov_len = total; /* only a frame's payload can be skipped */
		break;
	}
}

/* Ends a syscall's walk: closes the open segment and counts a lost walk or
 * a full record; the bytes of e->data used. */
static __always_inline __u32 h2_walk_end(struct h2_walk_ctx *w)
{
	h2_close_segment(w);
	if (w->st->lost)
		count_drop(PODTAP_DROP_H2_WALK_LOST);
	else if (WPOS(w)->full)
		count_drop(PODTAP_DROP_H2_CAPTURE_FULL);
	return WPOS(w)->out;
}

/* Sends the record built in the scratch with n bytes of data. */
static __always_inline void send_record(struct payload_scratch *scr, __u64 n)
{
	struct podtap_payload_event *e = &scr->ev;
	__u64 flags;

	barrier_var(n);
	n &= PODTAP_PAYLOAD_MAX * 2 - 1;
	if (n > PODTAP_PAYLOAD_MAX)
		n = PODTAP_PAYLOAD_MAX;
	e->captured = n;
	/* A wakeup per record costs more than the record itself at high rates:
	 * the agent drains this ring on its own clock and is woken only when
	 * the backlog grows. */
	flags = ++scr->records % backlog_check_every == 0 &&
			bpf_ringbuf_query(&payload_events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
		? BPF_RB_FORCE_WAKEUP
		: BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&payload_events, e, offsetof(struct podtap_payload_event, data) + n,
			       flags))
		count_drop(PODTAP_DROP_PAYLOAD_RINGBUF_FULL);
}

#if PODTAP_BPF_LOOP
/* The walk of one syscall, in one program run (bpf_loop). */
static __always_inline __u32 h2_walk(struct payload_scratch *scr, struct podtap_h2_walk *st,
				     struct io_args *a, __u64 total)
{
	struct h2_walk_ctx w = {.e = &scr->ev, .st = st};

	if (st->lost)
		return 0;
	h2_walk_begin(scr, &w.pos, st, a, total);
	if (!st->lost) {
		long steps = WALK(h2_walk_step, &w);

		if (steps >= WALK_STEPS && w.pos.off < w.pos.total)
			st->lost = 1;
	}
	return h2_walk_end(&w);
}
#define H2_TAIL_TP NULL
#define H2_TAIL_UP NULL
#else
/* Without bpf_loop a program verifies only WALK_STEPS steps of the walk, so
 * a syscall's walk goes on in tail calls of a program that takes
 * WALK_STEPS more each time, its position kept in the per-CPU scratch
 * (the program's CPU stays the same across tail calls). The kernel allows
 * 32 or 33 tail calls per program run (by version): a syscall is followed
 * for up to WALK_STEPS * (WALK_TAIL_CALLS + 1) steps, and when the kernel
 * refuses the last call the walk is lost, counted. One program per type,
 * since a tail call stays within its type: the syscall exit's tracepoint
 * and the TLS uprobes'. */
#define WALK_TAIL_CALLS 32

int podtap_h2_walk_tp(void *ctx);
int podtap_h2_walk_up(struct pt_regs *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(void *));
} h2_walk_tp_progs SEC(".maps") = {
	.values = {[0] = (void *)&podtap_h2_walk_tp},
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(struct pt_regs *));
} h2_walk_up_progs SEC(".maps") = {
	.values = {[0] = (void *)&podtap_h2_walk_up},
};

#define H2_TAIL_TP ((void *)&h2_walk_tp_progs)
#define H2_TAIL_UP ((void *)&h2_walk_up_progs)

/* Whether the walk stopped for want of steps before the end of the
 * syscall's bytes (every other early stop sets `lost` itself). */
static __always_inline bool h2_walk_cut(struct h2_walk_ctx *w, long steps)
{
	return !w->st->lost && steps >= WALK_STEPS && WPOS(w)->off < WPOS(w)->total;
}

/* Takes the walk of the syscall in the scratch WALK_STEPS steps further;
 * sends its record when it ends. */
static __always_inline int h2_walk_tail(void *ctx, void *progs)
{
	struct podtap_verdict *verdict;
	struct payload_scratch *scr;
	struct h2_walk_ctx w;
	__u32 zero = 0;

	scr = bpf_map_lookup_elem(&scratch, &zero);
	if (!scr)
		return 0;
	verdict = bpf_map_lookup_elem(&verdicts, &scr->walk_key);
	if (!verdict) {
		/* The agent deleted the connection's verdict meanwhile. */
		send_record(scr, 0);
		return 0;
	}
	w.p = &scr->pos;
	w.e = &scr->ev;
	w.st = &verdict->walk[scr->walk_dir & 1];
	if (h2_walk_cut(&w, WALK(h2_walk_step, &w))) {
		if (scr->walk_calls < WALK_TAIL_CALLS) {
			scr->walk_calls++;
			bpf_tail_call(ctx, progs, 0);
		}
		w.st->lost = 1;
	}
	send_record(scr, h2_walk_end(&w));
	return 0;
}

SEC("tracepoint")
int podtap_h2_walk_tp(void *ctx)
{
	return h2_walk_tail(ctx, &h2_walk_tp_progs);
}

SEC("uprobe")
int podtap_h2_walk_up(struct pt_regs *ctx)
{
	return h2_walk_tail(ctx, &h2_walk_up_progs);
}
#endif

static __always_inline __u8 sk_state(__u64 sk)
{
#if PODTAP_KFUNC_CAST
	struct sock *s = bpf_rdonly_cast((void *)sk, bpf_core_type_id_kernel(struct sock));

	return s->__sk_common.skc_state;
#else
	struct sock *s = (struct sock *)sk;

	return BPF_CORE_READ(s, __sk_common.skc_state);
#endif
}

/* The socket's sequence number after the bytes moved so far in `dir`: sent
 * by the application (write_seq), or read by it (copied_seq). */
static __always_inline __u32 stream_seq(__u64 sk, __u32 dir)
{
#if PODTAP_KFUNC_CAST
	struct tcp_sock *tp = bpf_rdonly_cast((void *)sk, bpf_core_type_id_kernel(struct tcp_sock));

	return dir == PODTAP_DATA_SEND ? tp->write_seq : tp->copied_seq;
#else
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	return dir == PODTAP_DATA_SEND ? BPF_CORE_READ(tp, write_seq) : BPF_CORE_READ(tp, copied_seq);
#endif
}

/* A direction's walk follows its bytes in stream order, a syscall after
 * another. Two syscalls on one socket in one direction at once (threads
 * writing or reading one connection without a lock of their own) can reach
 * their exit programs in the other order, and bytes moved where these
 * probes do not look (io_uring, splice) are never walked: either way the
 * walk would read frame headers where there are none. So each syscall's
 * bytes must end at the socket's own sequence number, `ret` past where the
 * last walked ones ended; when they do not, the walk of that direction
 * stops, counted. Not for TLS plaintext (its bytes are not the socket's),
 * nor for a socket with an upper layer protocol (kernel TLS: its sequence
 * numbers count the records). */
static __always_inline bool h2_in_order(struct podtap_h2_walk *st, struct io_args *a, long ret)
{
	/* Copied out: inside BPF_CORE_READ's argument, a->sk itself would be
	 * relocated against the kernel's types. */
	__u64 sk = a->sk;
	__u32 end;

	if (!sk || (a->conn_id & PODTAP_TLS_KEY_BIT))
		return true;
#if PODTAP_KFUNC_CAST
	struct inet_connection_sock *icsk =
		bpf_rdonly_cast((void *)sk, bpf_core_type_id_kernel(struct inet_connection_sock));

	if (icsk->icsk_ulp_ops)
		return true;
#else
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;

	if (BPF_CORE_READ(icsk, icsk_ulp_ops))
		return true;
#endif
	end = stream_seq(sk, a->dir);
	/* A read that meets the peer's FIN takes its sequence number too: the
	 * socket has then left ESTABLISHED (CLOSE_WAIT, or CLOSING, TIME_WAIT
	 * after our own FIN). */
	if (st->seq_known && end != st->seq + (__u32)ret &&
	    !(a->dir == PODTAP_DATA_RECV && end == st->seq + (__u32)ret + 1 &&
	      sk_state(sk) != TCP_ESTABLISHED)) {
		count_drop(PODTAP_DROP_H2_WALK_ORDER);
		return false;
	}
	st->seq = end;
	st->seq_known = 1;
	return true;
}

/* Sends the record of `ret` bytes moved as `a` describes: a prefix, or the
 * segments of an HTTP/2 connection. a->conn_id is the verdicts key (with
 * PODTAP_TLS_KEY_BIT for TLS plaintext). `ctx` and `tail`: the calling
 * program's context and its type's walk program (kernels without bpf_loop;
 * the record is then sent from there). */
static __always_inline void emit_payload(void *ctx, void *tail, struct io_args *a, long ret)
{
	struct podtap_payload_event *e;
	struct podtap_verdict *verdict;
	struct payload_scratch *scr;
	struct podtap_h2_walk *st;
	__u32 zero = 0;
	__u64 n;

	verdict = bpf_map_lookup_elem(&verdicts, &a->conn_id);
	if (verdict && verdict->verdict == PODTAP_VERDICT_STOP)
		return;
	scr = bpf_map_lookup_elem(&scratch, &zero);
	if (!scr)
		return;
	e = &scr->ev;
	e->kind = PODTAP_EV_PAYLOAD;
	e->dir = a->dir;
	e->flags = a->conn_id & PODTAP_TLS_KEY_BIT ? PODTAP_PF_TLS : 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->conn_id = a->conn_id & ~PODTAP_TLS_KEY_BIT;
	e->total_len = ret;
	if (!verdict) {
		n = prefix_len;
		if ((__u64)ret < n)
			n = ret; /* never more than the syscall moved */
		if (n > PODTAP_PAYLOAD_MAX)
			n = PODTAP_PAYLOAD_MAX;
		n = copy_prefix(e->data, a, n);
		/* The HTTP/2 client preface: from this very syscall on (a gRPC
		 * client writes preface, SETTINGS and its first request in one
		 * go), the connection's frames are followed here, since its
		 * header blocks can lie anywhere in a syscall's bytes. All 24
		 * bytes, and only as the first bytes of the direction: an
		 * HTTP/1 body may start with "PRI " too. */
		if (a->first && is_h2_preface(e->data, n)) {
			struct podtap_verdict h2 = {.verdict = PODTAP_VERDICT_H2};

			h2.walk[(a->dir - 1) & 1].skip = H2_PREFACE_LEN;
			h2.walk[(a->dir - 1) & 1].capture = 1;
			bpf_map_update_elem(&verdicts, &a->conn_id, &h2, BPF_ANY);
			verdict = bpf_map_lookup_elem(&verdicts, &a->conn_id);
			if (!verdict)
				return;
		}
	}
	if (verdict) {
		e->flags |= PODTAP_PF_SEGMENTS;
		st = &verdict->walk[(a->dir - 1) & 1];
		if (!st->lost && !h2_in_order(st, a, ret))
			st->lost = 1;
#if PODTAP_BPF_LOOP
		n = h2_walk(scr, st, a, ret);
#else
		n = 0;
		if (!st->lost) {
			h2_walk_begin(scr, &scr->pos, st, a, ret);
			if (!st->lost) {
				scr->walk_key = a->conn_id;
				scr->walk_dir = (a->dir - 1) & 1;
				scr->walk_calls = 0;
				bpf_tail_call(ctx, tail, 0);
				st->lost = 1; /* the tail call failed */
			}
			{
				struct h2_walk_ctx w = {.p = &scr->pos, .e = e, .st = st};

				n = h2_walk_end(&w);
			}
		}
#endif
	}
	send_record(scr, n);
}

/* A syscall on a tracked socket returned: its bytes, if it moved any. */
static __always_inline void bytes_moved(void *ctx, void *tail, struct io_args *a, long ret)
{
	struct podtap_sock_info *info;

	if (ret <= 0)
		return;
	/* Marked at exit, not entry: a first read that fails (EAGAIN) moved
	 * nothing. */
	if (a->first) {
		info = bpf_map_lookup_elem(&socks, &a->sk);
		if (info && info->conn_id == a->conn_id)
			info->data_seen |= a->dir;
	}
	emit_payload(ctx, tail, a, ret);
}

static __always_inline int on_exit(void *ctx, long ret)
{
	struct io_args *a;

	a = THREAD_STATE(inflight, struct io_args, false);
	if (!a || !a->conn_id)
		return 0;
#if !PODTAP_BPF_LOOP
	/* Done with the thread's entry before the record: an HTTP/2 record is
	 * sent from a tail call, which does not come back here. (A copy on the
	 * stack would cost the bpf_loop builds' verifier several times the
	 * states, so they keep reading the entry.) */
	struct io_args args = *a;

	a->conn_id = 0;
	a = &args;
#endif
	bytes_moved(ctx, H2_TAIL_TP, a, ret);
	a->conn_id = 0;
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
	}

/* One exit program for every syscall above: the loader attaches it to each
 * sys_exit_* tracepoint (their records have one layout), so the verifier
 * checks the payload path once instead of once per syscall. */
SEC("tracepoint")
int podtap_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx, ctx->ret);
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

#if PODTAP_BPF_LOOP
/* The same syscalls seen from one program at sys_exit (--syscall-hook
 * sys_exit, the default where it loads): the arguments are still in the
 * task's saved registers there, so there is no entry program, no entry->exit
 * state, and the syscall's work is done in one run. It runs for every
 * syscall of the node and returns at the number check for all others. Only
 * in the bpf_loop builds: their HTTP/2 walk makes no tail call, which a
 * tracing program could not make into the tracepoint programs' array. */
/* The saved registers are a typed argument of tp_btf: plain loads (CO-RE
 * relocated), no probe read, since the number is read on every syscall. */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define SYSCALL_ARG1(regs) ((regs)->di)
#define SYSCALL_ARG2(regs) ((regs)->si)
#define SYSCALL_ARG3(regs) ((regs)->dx)
#define SYSCALL_ARG4(regs) ((regs)->r10)
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile64 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR(regs) ((regs)->syscallno)
/* x0 holds the return value at exit; the first argument is kept in orig_x0. */
#define SYSCALL_ARG1(regs) ((regs)->orig_x0)
#define SYSCALL_ARG2(regs) ((regs)->regs[1])
#define SYSCALL_ARG3(regs) ((regs)->regs[2])
#define SYSCALL_ARG4(regs) ((regs)->regs[3])
#define NR_readv 65
#define NR_writev 66
#define NR_read 63
#define NR_write 64
#define NR_sendfile64 71
#define NR_sendto 206
#define NR_recvfrom 207
#define NR_sendmsg 211
#define NR_recvmsg 212
#else
#error "syscall numbers of this architecture are not known"
#endif

/* The syscall's arguments for the one run, in a map value rather than on the
 * stack: the payload path then has the shape the pairs' exit program has,
 * which the verifier walks in a fraction of the states. A program at
 * sys_exit does not nest on its CPU (it runs with migration off, and the
 * next syscall on that CPU starts after this one ends). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct io_args);
} exit_args SEC(".maps");

SEC("tp_btf/sys_exit")
int BPF_PROG(podtap_raw_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 zero = 0;
	struct io_args *a;
	__u8 kind, dir;
	__u64 flags = 0;

	switch (SYSCALL_NR(regs)) {
	case NR_read:
		kind = BUF_PLAIN, dir = PODTAP_DATA_RECV;
		break;
	case NR_write:
		kind = BUF_PLAIN, dir = PODTAP_DATA_SEND;
		break;
	case NR_readv:
		kind = BUF_IOVEC, dir = PODTAP_DATA_RECV;
		break;
	case NR_writev:
		kind = BUF_IOVEC, dir = PODTAP_DATA_SEND;
		break;
	case NR_recvfrom:
		kind = BUF_PLAIN, dir = PODTAP_DATA_RECV;
		flags = SYSCALL_ARG4(regs);
		break;
	case NR_sendto:
		kind = BUF_PLAIN, dir = PODTAP_DATA_SEND;
		break;
	case NR_recvmsg:
		kind = BUF_MSGHDR, dir = PODTAP_DATA_RECV;
		flags = SYSCALL_ARG3(regs);
		break;
	case NR_sendmsg:
		kind = BUF_MSGHDR, dir = PODTAP_DATA_SEND;
		break;
	case NR_sendfile64:
		kind = BUF_NONE, dir = PODTAP_DATA_SEND;
		break;
	default:
		return 0;
	}
	if (flags & MSG_PEEK)
		return 0;
	a = bpf_map_lookup_elem(&exit_args, &zero);
	if (!a || !syscall_args(a, (__s32)SYSCALL_ARG1(regs), SYSCALL_ARG2(regs),
				SYSCALL_ARG3(regs), kind, dir))
		return 0;
	bytes_moved(ctx, NULL, a, ret);
	return 0;
}
#endif

/* TLS plaintext: OpenSSL's SSL_read/SSL_write and their _ex forms, attached
 * by the agent to each file with the OpenSSL API the node's processes map
 * (a libssl, or a program with OpenSSL linked in). The plaintext buffer is
 * captured at return, under the connection learned from a syscall inside
 * this call or an earlier one of the same SSL object, or from its handshake
 * flight (ssl_conns). */
static __always_inline int ssl_enter(struct pt_regs *ctx, __u8 dir, bool ex)
{
	struct ssl_key k = {.tgid = current_tgid()};
	struct ssl_conn *conn;
	struct ssl_call *c;

	if (k.tgid == self_tgid)
		return 0;
	c = THREAD_STATE(ssl_calls, struct ssl_call, true);
	if (!c) {
		count_drop(PODTAP_DROP_SYSCALL_MAP_FULL);
		return 0;
	}
	c->ssl = PT_REGS_PARM1(ctx);
	c->buf = PT_REGS_PARM2(ctx);
	c->len_ptr = ex ? PT_REGS_PARM4(ctx) : 0;
	c->dir = dir;
	c->active = 1;
	c->saw_socket = 0;
	c->learn = 0;
	k.ssl = c->ssl;
	conn = bpf_map_lookup_elem(&ssl_conns, &k);
	c->conn_id = conn ? conn->conn_id : 0;
	return 0;
}

static __always_inline int ssl_exit(struct pt_regs *ctx)
{
	struct io_args a = {};
	struct ssl_call *c;
	long ret;

	c = THREAD_STATE(ssl_calls, struct ssl_call, false);
	if (!c || !c->active)
		return 0;
	c->active = 0;
	c->learn = !c->saw_socket;
	/* The functions return int: the register's upper half is not part of
	 * the value (-1 often reads as 0xffffffff). */
	ret = (int)PT_REGS_RC(ctx);
	if (c->dir && ret > 0) {
		__u64 n = ret;

		/* SSL_read_ex/SSL_write_ex return 1 and write the count. */
		if (c->len_ptr && bpf_probe_read_user(&n, sizeof(n), (void *)c->len_ptr))
			n = 0;
		if (!c->conn_id) {
			count_drop(PODTAP_DROP_TLS_UNMAPPED);
		} else if (n > 0 && n < (1ull << 31)) {
			a.conn_id = c->conn_id | PODTAP_TLS_KEY_BIT;
			a.buf = c->buf;
			a.kind = BUF_PLAIN;
			a.dir = c->dir;
			/* The plaintext has no marks of its own: the preface's
			 * 24 bytes alone decide. */
			a.first = 1;
			emit_payload(ctx, H2_TAIL_UP, &a, n);
		}
	}
	return 0;
}

#define SSL_PROBES(name, dir, ex)                                               \
	SEC("uprobe")                                                           \
	int podtap_ssl_enter_##name(struct pt_regs *ctx)                        \
	{                                                                       \
		return ssl_enter(ctx, dir, ex);                                 \
	}

SSL_PROBES(read, PODTAP_DATA_RECV, false)
SSL_PROBES(write, PODTAP_DATA_SEND, false)
SSL_PROBES(read_ex, PODTAP_DATA_RECV, true)
SSL_PROBES(write_ex, PODTAP_DATA_SEND, true)
SSL_PROBES(do_handshake, 0, false)

/* The return of every function above (one program, verified once). */
SEC("uretprobe")
int podtap_ssl_exit(struct pt_regs *ctx)
{
	return ssl_exit(ctx);
}

#if defined(__TARGET_ARCH_x86)
/* Go's crypto/tls, Go 1.17 and later on amd64 (the register ABI): uprobes
 * at the entry of crypto/tls.(*Conn).Read and Write and at each RET
 * instruction of Read, which the agent finds by disassembling it (a
 * uretprobe rewrites a return address on a stack Go may move). At entry the
 * receiver is in RAX, the buffer in RBX and its length in RCX; at a RET the
 * byte count is in RAX. R14 holds the goroutine (g), which keys a Read in
 * flight: a goroutine parked in Read resumes on another thread.
 *
 * The socket is read from the Conn at entry, not from syscalls (another
 * goroutine may run on the thread meanwhile): tls.Conn's first field,
 * conn net.Conn, is an interface (itab, data); for a *net.TCPConn data
 * points at a word holding the *netFD, whose poll.FD keeps the fd (Sysfd)
 * at +16. The itab's type hash (+16) tells a *net.TCPConn from any other
 * net.Conn; it depends on the Go compiler's version, so the agent puts the
 * hash of each program it attaches to in go_conn_types. */
#define GO_ITAB_HASH 16
#define GO_POLL_FD_SYSFD 16

/* Type hashes of *net.TCPConn in the attached Go programs (agent-written). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} go_conn_types SEC(".maps");

struct go_tls_call {
	__u64 buf;
	__u64 conn_id; /* 0: not a tracked TCP connection */
};

/* Read calls in flight (podtap.h). A process that exits with goroutines parked
 * in Read leaves theirs, which the agent deletes. Full: the call is counted
 * in syscall_map_full. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PODTAP_GO_TLS_CALLS);
	__type(key, struct podtap_go_tls_key);
	__type(value, struct go_tls_call);
} go_tls_calls SEC(".maps");

/* The tracked connection of a *tls.Conn, or 0: its net.Conn is not a
 * *net.TCPConn, or not one of a tracked socket. */
static __always_inline __u64 go_conn_id(__u64 tls_conn)
{
	struct podtap_sock_info *info;
	__u64 iface[2], net_fd;
	struct sock *sk;
	__s64 sysfd;
	__u32 hash;

	if (bpf_probe_read_user(iface, sizeof(iface), (void *)tls_conn) || !iface[0] ||
	    bpf_probe_read_user(&hash, sizeof(hash), (void *)(iface[0] + GO_ITAB_HASH)) ||
	    !bpf_map_lookup_elem(&go_conn_types, &hash))
		return 0;
	if (bpf_probe_read_user(&net_fd, sizeof(net_fd), (void *)iface[1]) || !net_fd ||
	    bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(net_fd + GO_POLL_FD_SYSFD)) ||
	    sysfd < 0 || sysfd > 0x7fffffff)
		return 0;
	sk = sock_of_fd((__s32)sysfd);
	if (!sk)
		return 0;
	return tracked_conn_id(sk, &info);
}

/* The plaintext of a tracked connection's tls.Conn at `conn`: `n` bytes at
 * `buf`, moved in `dir`. */
static __always_inline void go_tls_emit(struct pt_regs *ctx, __u64 conn_id, __u64 buf, long n,
					__u32 dir)
{
	struct io_args a = {};

	if (n <= 0 || n >= (1l << 31))
		return;
	if (!conn_id) {
		count_drop(PODTAP_DROP_TLS_UNMAPPED);
		return;
	}
	a.conn_id = conn_id | PODTAP_TLS_KEY_BIT;
	a.buf = buf;
	a.kind = BUF_PLAIN;
	a.dir = dir;
	a.first = 1; /* as for OpenSSL: the preface's 24 bytes alone decide */
	emit_payload(ctx, H2_TAIL_UP, &a, n);
}

/* Write's record is sent at its entry, whole: its bytes are in the buffer
 * then, and Go's Write returns fewer only with an error, which breaks the
 * connection. At a RET it would come too late: the reply can be read by
 * another goroutine on another thread before the writer gets there, and a
 * program that exits on that reply (a client's last call) never gets there
 * at all. Sent at entry, the request's record is in the ring before its
 * bytes are on the socket. */
SEC("uprobe")
int podtap_go_tls_write(struct pt_regs *ctx)
{
	if (current_tgid() == self_tgid)
		return 0;
	go_tls_emit(ctx, go_conn_id(ctx->ax), ctx->bx, (long)ctx->cx, PODTAP_DATA_SEND);
	return 0;
}

/* Read's bytes are there only at its RET: the entry keeps the call. */
SEC("uprobe")
int podtap_go_tls_read_enter(struct pt_regs *ctx)
{
	struct podtap_go_tls_key k = {.g = ctx->r14, .tgid = current_tgid()};
	struct go_tls_call c = {.buf = ctx->bx};

	if (k.tgid == self_tgid)
		return 0;
	c.conn_id = go_conn_id(ctx->ax);
	if (bpf_map_update_elem(&go_tls_calls, &k, &c, BPF_ANY))
		count_drop(PODTAP_DROP_SYSCALL_MAP_FULL);
	return 0;
}

SEC("uprobe")
int podtap_go_tls_read_ret(struct pt_regs *ctx)
{
	struct podtap_go_tls_key k = {.g = ctx->r14, .tgid = current_tgid()};
	struct go_tls_call *c;
	__u64 conn_id, buf;

	c = bpf_map_lookup_elem(&go_tls_calls, &k);
	if (!c)
		return 0;
	conn_id = c->conn_id;
	buf = c->buf;
	bpf_map_delete_elem(&go_tls_calls, &k);
	go_tls_emit(ctx, conn_id, buf, (long)ctx->ax, PODTAP_DATA_RECV);
	return 0;
}
#endif

/* Processes that called exec since the agent last looked, by tgid (as the
 * initial pid namespace numbers it). The agent reads just their mappings for
 * TLS libraries each second, instead of walking every process in /proc, and
 * deletes what it read. A full map is counted (PODTAP_DROP_EXEC_MAP_FULL),
 * and the agent then walks /proc once, so no process is missed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} execs SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int podtap_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	if (bpf_map_update_elem(&execs, &tgid, &one, BPF_ANY) != 0)
		count_drop(PODTAP_DROP_EXEC_MAP_FULL);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
