// PID 1 of an arm64 kernel-matrix guest (arm64.py builds it statically for
// aarch64 against Debian's arm64 libbpf, with the skeletons of the BPF
// objects built for arm64): mounts sysfs (the kernel's BTF, for CO-RE) and
// tracefs, then loads and attaches every program the agent loads, the way
// agent/kernel/probes.cc does (the same map sharing and read-only settings):
// the lifecycle programs as tp_btf and as a tracepoint, and each build of
// the socket data programs with its exit program on every traced syscall.
// One line per attempt on the console, "bpf-verify: <what>: ok" or
// "bpf-verify: <what>: FAILED (...)" after libbpf's own words, then
// "bpf-verify: auto picks <variant>" and "bpf-verify: done"; then it powers
// the guest off.
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

#include "sockdata.skel.h"
#include "sockdata_compat.skel.h"
#include "sockdata_probe_read.skel.h"
#include "tcp.skel.h"

// agent/kernel/probes.h's kTracedSyscalls.
static const char* const kTracedSyscalls[] = {
    "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "sendfile64"};
// The agent's defaults: --payload-prefix 256, a 1 MiB ring buffer here (the
// guest's memory is small; the size does not change what is verified).
enum { kPrefixLen = 256, kRingBytes = 1 << 20, kMaxSockets = 16384 };

static int print_libbpf(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  return vfprintf(stdout, fmt, ap);
}

static int report(const char* what, int err) {
  if (err == 0) {
    printf("bpf-verify: %s: ok\n", what);
  } else {
    printf("bpf-verify: %s: FAILED (%s)\n", what, strerror(err < 0 ? -err : err));
  }
  fflush(stdout);
  return err;
}

// Loads and attaches the lifecycle program of one kind; on success the
// object stays open in *out (its maps are shared with the payload objects).
static int load_tcp(bool btf, struct tcp_bpf** out) {
  struct tcp_bpf* s = tcp_bpf__open();
  if (s == NULL) return report(btf ? "tcp tp_btf open" : "tcp tracepoint open", errno);
  struct bpf_program* used = btf ? s->progs.podtap_tcp_state_btf : s->progs.podtap_tcp_state_tp;
  bpf_program__set_autoload(btf ? s->progs.podtap_tcp_state_tp : s->progs.podtap_tcp_state_btf,
                            false);
  bpf_map__set_max_entries(s->maps.events, kRingBytes);
  bpf_map__set_max_entries(s->maps.socks, kMaxSockets);
  int err = tcp_bpf__load(s);
  if (err == 0 && bpf_program__attach(used) == NULL) err = -errno;
  report(
      btf ? "tcp tp_btf (tp_btf/inet_sock_set_state)" : "tcp tracepoint (sock/inet_sock_set_state)",
      err);
  if (err != 0 || out == NULL) {
    tcp_bpf__destroy(s);
    return err;
  }
  *out = s;
  return 0;
}

// One build of the socket data programs: the same steps for every build, as
// every skeleton has the same members.
#define LOAD_PAYLOAD(skel, name, tcp)                                                             \
  ({                                                                                              \
    int err_ = 0;                                                                                 \
    struct skel* s_ = skel##__open();                                                             \
    if (s_ == NULL) {                                                                             \
      err_ = -errno;                                                                              \
    } else {                                                                                      \
      s_->rodata->prefix_len = kPrefixLen;                                                        \
      s_->rodata->self_tgid = (__u32)getpid();                                                    \
      s_->rodata->wakeup_bytes = kRingBytes / 4;                                                  \
      s_->rodata->backlog_check_every = 1;                                                        \
      if (bpf_map__reuse_fd(s_->maps.socks, bpf_map__fd((tcp)->maps.socks)) != 0 ||               \
          bpf_map__reuse_fd(s_->maps.drops, bpf_map__fd((tcp)->maps.drops)) != 0 ||               \
          bpf_map__reuse_fd(s_->maps.closed_socks, bpf_map__fd((tcp)->maps.closed_socks)))        \
        err_ = -errno;                                                                            \
      bpf_map__set_max_entries(s_->maps.payload_events, kRingBytes);                              \
      bpf_map__set_max_entries(s_->maps.verdicts, kMaxSockets);                                   \
      if (err_ == 0) err_ = skel##__load(s_);                                                     \
      if (err_ == 0) err_ = skel##__attach(s_);                                                   \
      for (size_t i_ = 0; err_ == 0 && i_ < sizeof kTracedSyscalls / sizeof *kTracedSyscalls;     \
           i_++) {                                                                                \
        char tp_[64];                                                                             \
        snprintf(tp_, sizeof tp_, "sys_exit_%s", kTracedSyscalls[i_]);                            \
        if (bpf_program__attach_tracepoint(s_->progs.podtap_sys_exit, "syscalls", tp_) == NULL) { \
          err_ = -errno;                                                                          \
          printf("bpf-verify: cannot attach syscalls/%s\n", tp_);                                 \
        }                                                                                         \
      }                                                                                           \
      skel##__destroy(s_);                                                                        \
    }                                                                                             \
    report("payload " name, err_);                                                                \
  })

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (mount("sysfs", "/sys", "sysfs", 0, NULL) != 0 ||
      mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL) != 0) {
    printf("bpf-verify: cannot mount sysfs and tracefs: %s\n", strerror(errno));
  } else {
    libbpf_set_print(print_libbpf);
    struct tcp_bpf* tcp = NULL;
    // Both kinds are verified; the payload objects share the maps of the
    // one the agent prefers (tp_btf) where it loads.
    bool tp_ok = load_tcp(false, NULL) == 0;
    if (load_tcp(true, &tcp) != 0 && tp_ok) load_tcp(false, &tcp);
    if (tcp != NULL) {
      // In the order the agent tries them (PayloadCandidates).
      const char* pick = "none";
      if (LOAD_PAYLOAD(sockdata_bpf, "btf_cast", tcp) == 0) pick = "btf_cast";
      if (LOAD_PAYLOAD(sockdata_probe_read_bpf, "probe_read", tcp) == 0 &&
          strcmp(pick, "none") == 0)
        pick = "probe_read";
      if (LOAD_PAYLOAD(sockdata_compat_bpf, "compat", tcp) == 0 && strcmp(pick, "none") == 0)
        pick = "compat";
      printf("bpf-verify: auto picks %s\n", pick);
      tcp_bpf__destroy(tcp);
    }
    printf("bpf-verify: done\n");
  }
  fflush(stdout);
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
