/* Kernel feature variants of the socket data programs, in one place: the
 * same source is built three times (CMakeLists.txt) and the agent's loader
 * (agent/kernel/probes.cc) picks the first build the running kernel can load:
 *
 *   sockdata             PODTAP_KFUNC_CAST + PODTAP_TASK_STORAGE + PODTAP_BPF_LOOP
 *   sockdata_probe_read  PODTAP_TASK_STORAGE + PODTAP_BPF_LOOP
 *   sockdata_compat      none of them: Linux 5.8 (ring buffer) and later
 *
 * PODTAP_KFUNC_CAST    the bpf_rdonly_cast kfunc (6.2+): fd -> socket with
 *                      typed loads instead of a probe read per pointer.
 * PODTAP_TASK_STORAGE  task local storage for tracing programs (5.11+) and
 *                      bpf_get_current_task_btf: per-thread state a pointer
 *                      away, where a hash by thread id costs a lookup.
 * PODTAP_BPF_LOOP      bpf_loop (5.17+): the HTTP/2 frame walk may take
 *                      4096 steps a syscall in one program run; without it
 *                      4 steps a run, continued in tail calls (128-132
 *                      steps, some 60 frames), and a syscall with more
 *                      frames than that loses the walk (counted as
 *                      h2_walk_lost).
 *
 * Every variant counts the same bytes and records; only their cost and the
 * HTTP/2 step limit differ. Included after vmlinux.h and the libbpf headers.
 */
#ifndef PODTAP_BPF_COMPAT_H
#define PODTAP_BPF_COMPAT_H

#ifndef PODTAP_KFUNC_CAST
#define PODTAP_KFUNC_CAST 0
#endif
#ifndef PODTAP_TASK_STORAGE
#define PODTAP_TASK_STORAGE 0
#endif
#ifndef PODTAP_BPF_LOOP
#define PODTAP_BPF_LOOP 0
#endif

#if PODTAP_KFUNC_CAST && !PODTAP_TASK_STORAGE
#error "the bpf_rdonly_cast walk starts from bpf_get_current_task_btf (PODTAP_TASK_STORAGE)"
#endif

/* --- per-thread state --------------------------------------------------- */

#if PODTAP_TASK_STORAGE
#define PER_THREAD_MAP(name, value_type)                                        \
	struct {                                                                \
		__uint(type, BPF_MAP_TYPE_TASK_STORAGE);                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                           \
		__type(key, int);                                               \
		__type(value, value_type);                                      \
	} name SEC(".maps")

/* This thread's entry of a PER_THREAD_MAP, created (zeroed) when `create`
 * and missing; NULL when missing or the kernel refused to create it. */
#define THREAD_STATE(map, value_type, create)                                   \
	((value_type *)bpf_task_storage_get(&(map), bpf_get_current_task_btf(), 0, \
					    (create) ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0))

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_task_btf()->tgid;
}
#else
/* LRU: the entry of a thread that exited ages out instead of filling it. */
#define PER_THREAD_MAP(name, value_type)                                        \
	struct {                                                                \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                            \
		__uint(max_entries, 65536);                                     \
		__type(key, __u64);                                             \
		__type(value, value_type);                                      \
	} name SEC(".maps")

static __always_inline void *thread_state(void *map, const void *zero, bool create)
{
	__u64 id = bpf_get_current_pid_tgid();
	void *v = bpf_map_lookup_elem(map, &id);

	if (v || !create)
		return v;
	bpf_map_update_elem(map, &id, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, &id);
}

#define THREAD_STATE(map, value_type, create)                                   \
	((value_type *)thread_state(&(map), &(value_type){}, (create)))

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}
#endif

/* --- fd -> socket ------------------------------------------------------- */

#if PODTAP_KFUNC_CAST
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* The struct sock behind a file descriptor of the current task, or NULL. A
 * file that is not a socket fails the back-pointer check, and a socket that
 * is not tracked is not a key of `socks`, so both cost one lookup. The walk
 * uses the kernel's types directly (loads the verifier guards, not a helper
 * call per pointer): only the fd array slot needs a probe read. */
static __always_inline struct sock *sock_of_fd(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct socket *sock;
	struct file *file;
	void *slot;

	if ((unsigned int)fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&slot, sizeof(slot), &fdt->fd[fd]) || !slot)
		return NULL;
	file = bpf_rdonly_cast(slot, bpf_core_type_id_kernel(struct file));
	sock = bpf_rdonly_cast(file->private_data, bpf_core_type_id_kernel(struct socket));
	if (!sock || sock->file != slot)
		return NULL;
	return sock->sk;
}

/* A field of the socket sock_of_fd returned: a typed load. */
#define SK_FIELD(sk, field) ((sk)->field)
#else
/* As above, with a probe read per pointer (no typed pointers to cast to). */
static __always_inline struct sock *sock_of_fd(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds;
	struct socket *sock;
	struct file *file;

	if ((unsigned int)fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

#define SK_FIELD(sk, field) BPF_CORE_READ(sk, field)
#endif

/* --- bounded walks ------------------------------------------------------ */

/* LOOP(n, fn, ctx) calls fn(i, ctx) for i = 0, 1, ... until it returns 1,
 * at most n times, and is the number of calls. With bpf_loop the verifier
 * checks fn once; a bounded loop it follows through every step. */
#if PODTAP_BPF_LOOP
#define LOOP(n, fn, ctx) bpf_loop(n, fn, ctx, 0)
#define WALK_FN static long /* a bpf_loop callback */
#define WALK_STEPS 4096
#else
/* Inlined: a program that makes tail calls should have no calls of its own
 * (kernels before 5.10 refuse the mix, and not every JIT takes it since). */
#define WALK_FN static __always_inline long
#define LOOP(n, fn, ctx)                                                        \
	({                                                                      \
		__u32 _i;                                                       \
		_Pragma("clang loop unroll(disable)") for (_i = 0; _i < (n); _i++) \
			if (fn(_i, ctx))                                        \
				break;                                          \
		_i;                                                             \
	})
/* The frame walk's step branches a lot: 4 steps verify in ~150k
 * instructions, 8 exceed the verifier's 1M. So on kernels without bpf_loop
 * a program takes 4 steps (a few frames) and tail-calls the next
 * (sockdata.bpf.c, h2_walk_tail); a syscall that needs more than all the
 * tail calls allow loses its connection's walk, counted. */
#define WALK_STEPS 4
#endif

/* The HTTP/2 frame walk of one syscall. */
#define WALK(fn, ctx) LOOP(WALK_STEPS, fn, ctx)

#endif /* PODTAP_BPF_COMPAT_H */
