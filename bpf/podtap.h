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
	PODTAP_DROP__COUNT = 4,
};

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
	__u8 pad[7];
};

/* One record per read/write-family syscall on a tracked TCP socket. Only
 * `captured` bytes of data follow the header; the record is that long. */
struct podtap_payload_event {
	__u32 kind;     /* PODTAP_EV_PAYLOAD */
	__u8 dir;       /* enum podtap_data_dir */
	__u8 pad;
	__u16 captured; /* bytes of data[] present */
	__u64 ts_ns;
	__u64 conn_id;
	__s64 total_len; /* the syscall's return value: every byte moved */
	__u8 data[PODTAP_PAYLOAD_MAX];
};

/* verdicts map values, written by the agent per connection id. */
#define PODTAP_VERDICT_STOP 0xffffffffu /* not a protocol we parse: no more payload */

#endif /* PODTAP_BPF_PODTAP_H */
