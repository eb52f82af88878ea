// podtap-hook-floor: attaches an empty BPF program to one kernel hook and
// holds it until SIGTERM or SIGINT, for bench/http_overhead.py's floors.
//
//   podtap-hook-floor tp_btf        tp_btf/sys_exit (every syscall's exit)
//   podtap-hook-floor raw_tp        raw_tp/sys_exit (every syscall's exit)
//   podtap-hook-floor tracepoints   syscalls/sys_enter_NAME and sys_exit_NAME of
//                                   each syscall podtap follows (kTracedSyscalls)
#include <bpf/libbpf.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/kernel/probes.h"
#include "floor.skel.h"

int main(int argc, char** argv) {
  const std::string hook = argc == 2 ? argv[1] : "";
  if (hook != "tp_btf" && hook != "raw_tp" && hook != "tracepoints") {
    std::fprintf(stderr, "usage: %s tp_btf|raw_tp|tracepoints\n", argv[0]);
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);

  floor_bpf* skel = floor_bpf__open();
  if (skel == nullptr) {
    std::fprintf(stderr, "cannot open the BPF object: %s\n", std::strerror(errno));
    return 1;
  }
  bpf_program__set_autoload(skel->progs.floor_tp_btf, hook == "tp_btf");
  bpf_program__set_autoload(skel->progs.floor_raw_tp, hook == "raw_tp");
  bpf_program__set_autoload(skel->progs.floor_tracepoint, hook == "tracepoints");
  if (int err = floor_bpf__load(skel); err != 0) {
    std::fprintf(stderr, "cannot load the %s program: %s\n", hook.c_str(), std::strerror(-err));
    floor_bpf__destroy(skel);
    return 1;
  }
  std::vector<bpf_link*> links;
  auto attach = [&](bpf_link* link, const std::string& what) {
    if (link == nullptr) {
      std::fprintf(stderr, "cannot attach %s: %s\n", what.c_str(), std::strerror(errno));
      return false;
    }
    links.push_back(link);
    return true;
  };
  bool ok = true;
  if (hook == "tp_btf") {
    ok = attach(bpf_program__attach(skel->progs.floor_tp_btf), "tp_btf/sys_exit");
  } else if (hook == "raw_tp") {
    ok = attach(bpf_program__attach(skel->progs.floor_raw_tp), "raw_tp/sys_exit");
  } else {
    for (const char* name : podtap::kTracedSyscalls) {
      for (const char* side : {"sys_enter_", "sys_exit_"}) {
        const std::string tp = std::string(side) + name;
        ok = ok && attach(bpf_program__attach_tracepoint(skel->progs.floor_tracepoint, "syscalls",
                                                         tp.c_str()),
                          "syscalls/" + tp);
      }
    }
  }
  if (ok) {
    std::printf("attached %zu\n", links.size());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
  }
  for (bpf_link* link : links) bpf_link__destroy(link);
  floor_bpf__destroy(skel);
  return ok ? 0 : 1;
}
