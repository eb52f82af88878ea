// SPDX-License-Identifier: GPL-2.0
/* Programs that do nothing, on each kernel hook podtap's socket data
 * programs could use: what the hook itself costs before any work is done in
 * it. Only bench/http_overhead.py loads them (through podtap-hook-floor), to
 * report podtap's cost as a distance from the floor of its own hook. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Every syscall's exit, with BTF-typed arguments. */
SEC("tp_btf/sys_exit")
int floor_tp_btf(void *ctx)
{
	return 0;
}

/* Every syscall's exit, raw tracepoint. */
SEC("raw_tp/sys_exit")
int floor_raw_tp(void *ctx)
{
	return 0;
}

/* The per-syscall tracepoints podtap attaches today: the loader puts this one
 * program on the entry and the exit of each traced syscall. */
SEC("tracepoint")
int floor_tracepoint(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
