/* The kernel/userspace ABI of podtap: event layouts and counters shared by the
 * BPF programs and the agent's event decoder (the only userspace reader). */
#ifndef PODTAP_BPF_PODTAP_H
#define PODTAP_BPF_PODTAP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

enum podtap_event_kind {
	PODTAP_EV_TCP_OPEN = 1,         /* reached ESTABLISHED */
	PODTAP_EV_TCP_CLOSE = 2,        /* an established connection reached CLOSE */
	PODTAP_EV_TCP_CONNECT_FAIL = 3, /* SYN_SENT -> CLOSE: the connect failed */
	PODTAP_EV_PAYLOAD = 4,          /* bytes crossed the socket API */
};

enum podtap_direction {
	PODTAP_DIR_OUTBOUND = 1, /* the socket's owner opened it (connect) */
	PODTAP_DIR_INBOUND = 2,  /* the socket's owner accepted it */
};

/* podtap_tcp_event.flags */
#define PODTAP_F_FIN_RECEIVED (1u << 0) /* the peer's FIN was taken in sequence */
#define PODTAP_F_FIN_ACKED (1u << 1)    /* our FIN was sent and acknowledged */
#define PODTAP_F_UNTRACKED (1u << 2)    /* close of a socket opened before we attached */
#define PODTAP_F_NO_COOKIE (1u << 3)    /* cookie not available (tracepoint fallback) */

/* Indexes of the per-CPU drop counters (map `drops`). */
enum podtap_drop {
	PODTAP_DROP_RINGBUF_FULL = 0, /* event not delivered: ring buffer full */
	PODTAP_DROP_SOCKMAP_FULL = 1, /* open not remembered: socket map full */
	PODTAP_DROP_PAYLOAD_RINGBUF_FULL = 2, /* payload event not delivered */
	PODTAP_DROP_SYSCALL_MAP_FULL = 3,     /* syscall arguments not remembered */
	/* HTTP/2 frame walk: a record's room ran out before every frame header
	 * and header block byte of the syscall was captured */
	PODTAP_DROP_H2_CAPTURE_FULL = 4,
	/* HTTP/2 frame walk: frame boundaries lost (bytes unreadable, or more
	 * frames in one syscall than the walk's step limit) */
	PODTAP_DROP_H2_WALK_LOST = 5,
	/* TLS plaintext whose socket was not known: no syscall on it was seen
	 * inside an SSL call of that SSL object yet */
	PODTAP_DROP_TLS_UNMAPPED = 6,
	/* close event lost for good: the ring buffer had no room for it and
	 * the pending_closes map none either */
	PODTAP_DROP_CLOSE_MAP_FULL = 7,
	/* HTTP/2 frame walk: a syscall's bytes did not follow the last walked
	 * ones in the socket's stream (two syscalls in one direction at once,
	 * or bytes moved where the probes do not see: io_uring, splice); the
	 * walk of that direction stops */
	PODTAP_DROP_H2_WALK_ORDER = 8,
	/* exec not remembered: the map of processes that exec'd since the agent
	 * last looked was full (the agent then walks /proc) */
	PODTAP_DROP_EXEC_MAP_FULL = 9,
	PODTAP_DROP__COUNT = 10,
};

/* Entries of the pending_closes map: close and failed-connect events the
 * ring buffer had no room for, kept (by connection id) until the agent's
 * next poll takes them. */
#define PODTAP_PENDING_CLOSES 4096

/* One record per TCP lifecycle event. Raw kernel counters are passed as they
 * are; the decoder turns them into payload bytes (it knows the SYN/FIN rules). */
struct podtap_tcp_event {
	__u32 kind;      /* enum podtap_event_kind */
	__u32 flags;     /* PODTAP_F_* */
	__u64 ts_ns;     /* bpf_ktime_get_ns() at the event */
	__u64 conn_id;   /* socket cookie (same value sock_diag reports) */
	__u64 cgroup_id; /* cgroup v2 id of the socket */
	__u64 open_ns;   /* when it reached ESTABLISHED (close events) */
	/* tcp_sock.bytes_acked / bytes_received now, and at ESTABLISHED */
	__u64 bytes_acked;
	__u64 bytes_received;
	__u64 base_acked;
	__u64 base_received;
	__u32 netns_ino; /* inode of the socket's network namespace */
	__s32 sk_err;    /* sk->sk_err at close (ECONNREFUSED, ECONNRESET, ...) */
	__u16 family;    /* AF_INET or AF_INET6 */
	__u16 sport;     /* host byte order */
	__u16 dport;     /* host byte order */
	__u8 direction;  /* enum podtap_direction; 0 when unknown */
	__u8 old_state;  /* TCP state before this transition */
	__u8 saddr[16];  /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

/* Direction of payload bytes, seen from the socket's owner. */
enum podtap_data_dir {
	PODTAP_DATA_SEND = 1,
	PODTAP_DATA_RECV = 2,
};

/* Largest payload prefix a record can carry (the configured prefix is at most this). */
#define PODTAP_PAYLOAD_MAX 4096

/* What the socks map remembers between ESTABLISHED and CLOSE. Shared by the
 * lifecycle program (writer) and the payload programs (readers). */
struct podtap_sock_info {
	__u64 conn_id;
	__u64 open_ns;
	__u64 base_acked;
	__u64 base_received;
	__u8 direction;
	/* Bits by enum podtap_data_dir: directions in which a syscall has moved
	 * bytes (the payload programs set them; an HTTP/2 preface counts only
	 * as a connection's first bytes). */
	__u8 data_seen;
	__u8 pad[6];
};

/* podtap_payload_event.flags */
/* data[] is a list of segments (struct podtap_segment, then its bytes), not
 * a prefix: an HTTP/2 connection's frame headers and header blocks wherever
 * they lie in the syscall's bytes. */
#define PODTAP_PF_SEGMENTS (1u << 0)
/* data[] is plaintext from the TLS library's SSL_read/SSL_write on this
 * connection, not the bytes of a syscall (which are TLS records). */
#define PODTAP_PF_TLS (1u << 1)

/* One record per read/write-family syscall on a tracked TCP socket. Only
 * `captured` bytes of data follow the header; the record is that long. */
struct podtap_payload_event {
	__u32 kind;     /* PODTAP_EV_PAYLOAD */
	__u8 dir;       /* enum podtap_data_dir */
	__u8 flags;     /* PODTAP_PF_* */
	__u16 captured; /* bytes of data[] present */
	__u64 ts_ns;
	__u64 conn_id;
	__s64 total_len; /* the syscall's return value: every byte moved */
	__u8 data[PODTAP_PAYLOAD_MAX];
};

/* Header of one segment in a PODTAP_PF_SEGMENTS record: `len` bytes that
 * the syscall moved starting at `offset` follow it. Segments are in offset
 * order and do not overlap. */
struct podtap_segment {
	__u32 offset;
	__u16 len;
	__u16 pad;
};

/* podtap_verdict.verdict */
#define PODTAP_VERDICT_STOP 0xffffffffu /* not a protocol we parse: no more payload */
#define PODTAP_VERDICT_H2 0xfffffffeu   /* HTTP/2: follow frames, capture segments */

/* Where the kernel is in one direction of an HTTP/2 connection's frames. */
struct podtap_h2_walk {
	__u32 skip;     /* bytes of the current frame (or preface) still to come */
	__u8 capture;   /* 1: capture them (header blocks, SETTINGS, GOAWAY, preface) */
	__u8 head_have; /* bytes of a frame header split across syscalls, so far */
	__u8 lost;      /* 1: frame boundaries lost; nothing more is captured */
	__u8 seq_known; /* 1: seq holds where the walked bytes end */
	__u8 head[4];   /* its length and type bytes */
	__u32 seq;      /* the socket's sequence number after the walked bytes */
};

/* Connection ids made up where the socket cookie cannot be had (the plain
 * tracepoint, before tp_btf): this bit set, far above any cookie and below
 * PODTAP_TLS_KEY_BIT. */
#define PODTAP_SYNTH_ID_BIT (1ull << 62)

/* The verdicts key of a connection's TLS plaintext: its id with this bit
 * (socket cookies are counters, far below it). */
#define PODTAP_TLS_KEY_BIT (1ull << 63)

/* verdicts map value, by connection id (or id | PODTAP_TLS_KEY_BIT).
 * Written by the kernel when it sees the HTTP/2 client preface and by the
 * agent (STOP); deleted by the agent when the connection closes. */
struct podtap_verdict {
	__u32 verdict; /* PODTAP_VERDICT_* */
	__u32 pad;
	struct podtap_h2_walk walk[2]; /* by enum podtap_data_dir - 1 */
};

/* go_tls_calls (sockdata.bpf.c): a Go crypto/tls Read in flight, by process
 * and goroutine (the g pointer). The agent deletes the entries of processes
 * that exited. */
#define PODTAP_GO_TLS_CALLS 65536
struct podtap_go_tls_key {
	__u64 g;
	__u32 tgid;
	__u32 pad; /* zero */
};

#endif /* PODTAP_BPF_PODTAP_H */
