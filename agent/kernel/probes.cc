// libbpf skeleton handling for bpf/tcp.bpf.c.
#include "agent/kernel/probes.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/kernel/tls_libs.h"
#include "sockdata.skel.h"
#include "sockdata_compat.skel.h"
#include "sockdata_probe_read.skel.h"
#include "tcp.skel.h"

extern "C" {
#include "bpf/podtap.h"
}

namespace podtap {
namespace {

// libbpf's own messages go to the debug log; the last warning is kept so a
// failed load can say why in the one line an operator reads.
std::mutex g_log_mu;
std::string g_last_libbpf_warning;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  // Whole, however long: a refused program's verifier log is one message,
  // and its reason is at the end.
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string line(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) vsnprintf(line.data(), line.size() + 1, fmt, args);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (level == LIBBPF_WARN) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_last_libbpf_warning = line;
  }
  spdlog::debug("libbpf: {}", line);
  return 0;
}

std::string LastLibbpfWarning() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  return g_last_libbpf_warning;
}

bool IsMountedAs(const char* path, int64_t magic) {
  struct statfs st;
  return statfs(path, &st) == 0 && static_cast<int64_t>(st.f_type) == magic;
}

std::string EnsureMounted(const char* path, const char* fstype, int64_t magic) {
  if (IsMountedAs(path, magic)) return "";
  mkdir(path, 0700);
  if (mount(fstype, path, fstype, 0, nullptr) != 0) {
    return std::string("cannot mount ") + fstype + " at " + path + ": " + std::strerror(errno);
  }
  spdlog::info("mounted {} at {}", fstype, path);
  return "";
}

}  // namespace

std::string PrepareSystem() {
  if (geteuid() != 0) {
    return "podtap-agent must run as root: it loads eBPF programs and reads every network "
           "namespace (try: sudo make run)";
  }
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return "kernel BTF not found at /sys/kernel/btf/vmlinux: podtap's CO-RE programs need a "
           "kernel built with CONFIG_DEBUG_INFO_BTF=y";
  }
  libbpf_set_print(LibbpfPrint);
  if (auto err = EnsureMounted("/sys/kernel/tracing", "tracefs", TRACEFS_MAGIC); !err.empty()) {
    return err;
  }
  return EnsureMounted("/sys/fs/bpf", "bpf", BPF_FS_MAGIC);
}

const char* PayloadVariantName(PayloadVariant v) {
  switch (v) {
    case PayloadVariant::kAuto:
      return "auto";
    case PayloadVariant::kBtfCast:
      return "btf_cast";
    case PayloadVariant::kProbeRead:
      return "probe_read";
    case PayloadVariant::kCompat:
      return "compat";
  }
  return "?";
}

const char* SyscallHookName(SyscallHook h) {
  switch (h) {
    case SyscallHook::kAuto:
      return "auto";
    case SyscallHook::kSysExit:
      return "sys_exit";
    case SyscallHook::kPairs:
      return "pairs";
  }
  return "?";
}

KernelFeatures ProbeKernelFeatures() {
  KernelFeatures f;
  f.ringbuf = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) == 1;
  f.task_storage =
      libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, nullptr) == 1 &&
      libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_task_storage_get, nullptr) == 1 &&
      libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_get_current_task_btf, nullptr) ==
          1;
  f.bpf_loop = libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_loop, nullptr) == 1;
  // A kfunc is there when the kernel's BTF has it; whether tracepoints may
  // call it, the load itself tells (a refused load falls back).
  if (btf* vmlinux = btf__load_vmlinux_btf(); vmlinux != nullptr) {
    f.rdonly_cast = btf__find_by_name_kind(vmlinux, "bpf_rdonly_cast", BTF_KIND_FUNC) > 0;
    btf__free(vmlinux);
  }
  return f;
}

std::vector<PayloadVariant> PayloadCandidates(const KernelFeatures& f) {
  std::vector<PayloadVariant> v;
  if (f.rdonly_cast && f.task_storage && f.bpf_loop) v.push_back(PayloadVariant::kBtfCast);
  if (f.task_storage && f.bpf_loop) v.push_back(PayloadVariant::kProbeRead);
  v.push_back(PayloadVariant::kCompat);
  return v;
}

std::variant<std::unique_ptr<TcpProbes>, std::string> TcpProbes::Attach(const ProbeOptions& opts,
                                                                        EventFn on_event) {
  KernelFeatures features = ProbeKernelFeatures();
  spdlog::info("kernel features: ring buffer {}, task storage {}, bpf_loop {}, bpf_rdonly_cast {}",
               features.ringbuf ? "yes" : "no", features.task_storage ? "yes" : "no",
               features.bpf_loop ? "yes" : "no", features.rdonly_cast ? "yes" : "no");
  if (!features.ringbuf) {
    return std::string(
        "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF): podtap needs Linux 5.8 or "
        "later");
  }
  std::variant<std::unique_ptr<TcpProbes>, std::string> r;
  if (opts.mode != ProbeMode::kTracepoint) {
    r = TryAttach(opts, /*btf=*/true, on_event);
    if (opts.mode == ProbeMode::kAuto && std::holds_alternative<std::string>(r)) {
      spdlog::warn(
          "tp_btf/inet_sock_set_state did not load ({}); using the sock/inet_sock_set_state "
          "tracepoint instead (same metrics; socket cookies only where the kernel made one)",
          std::get<std::string>(r));
      r = TryAttach(opts, /*btf=*/false, on_event);
    }
  } else {
    r = TryAttach(opts, /*btf=*/false, on_event);
  }
  auto* probes = std::get_if<std::unique_ptr<TcpProbes>>(&r);
  if (probes == nullptr) return r;
  TcpProbes& p = **probes;
  p.features_ = features;
  p.features_.tp_btf = p.mode_ == "tp_btf";
  if (!opts.capture_payload) {
    spdlog::info("payload capture off: TCP metrics only");
    return r;
  }
  if (std::string err = p.AttachPayload(opts); !err.empty()) return err;
  return r;
}

std::variant<std::unique_ptr<TcpProbes>, std::string> TcpProbes::TryAttach(const ProbeOptions& opts,
                                                                           bool btf, EventFn fn) {
  std::unique_ptr<TcpProbes> p(new TcpProbes());
  p->on_event_ = std::move(fn);
  p->mode_ = btf ? "tp_btf" : "tracepoint";
  p->skel_ = tcp_bpf__open();
  if (p->skel_ == nullptr) {
    return std::string("cannot open BPF object tcp.bpf.o: ") + std::strerror(errno);
  }
  bpf_program* used =
      btf ? p->skel_->progs.podtap_tcp_state_btf : p->skel_->progs.podtap_tcp_state_tp;
  bpf_program* unused =
      btf ? p->skel_->progs.podtap_tcp_state_tp : p->skel_->progs.podtap_tcp_state_btf;
  bpf_program__set_autoload(unused, false);
  bpf_map__set_max_entries(p->skel_->maps.events, opts.ringbuf_bytes);
  bpf_map__set_max_entries(p->skel_->maps.socks, opts.max_sockets);

  std::string prog_desc =
      std::string(bpf_program__name(used)) + " (" + bpf_program__section_name(used) + ")";
  if (int err = tcp_bpf__load(p->skel_); err != 0) {
    return "cannot load BPF program " + prog_desc + ": " + std::strerror(-err) + " — " +
           LastLibbpfWarning();
  }
  bpf_link* link = bpf_program__attach(used);
  if (link == nullptr) {
    return "cannot attach BPF program " + prog_desc + ": " + std::strerror(errno) + " — " +
           LastLibbpfWarning();
  }
  p->skel_->links.podtap_tcp_state_btf = btf ? link : nullptr;
  p->skel_->links.podtap_tcp_state_tp = btf ? nullptr : link;
  p->rb_ =
      ring_buffer__new(bpf_map__fd(p->skel_->maps.events), &TcpProbes::OnSample, p.get(), nullptr);
  if (p->rb_ == nullptr) {
    return std::string("cannot open the events ring buffer: ") + std::strerror(errno);
  }
  spdlog::info("attached {} (ring buffer {} bytes, socket map {} entries)", prog_desc,
               opts.ringbuf_bytes, opts.max_sockets);
  return p;
}

namespace {

// Opens, sizes and loads one build of the socket data programs; every
// build's skeleton has the same members, so one template serves them all.
template <typename Skel>
struct SkelFns {
  Skel* (*open)();
  int (*load)(Skel*);
  int (*attach)(Skel*);
  void (*destroy)(Skel*);
};

template <typename Skel>
std::string LoadPayloadObject(SkelFns<Skel> fns, SyscallHook hook, const ProbeOptions& opts,
                              tcp_bpf* tcp, TcpProbes::PayloadObject* out) {
  Skel* s = fns.open();
  if (s == nullptr) return std::string("cannot open the BPF object: ") + std::strerror(errno);
  auto fail = [&](std::string msg) {
    fns.destroy(s);
    return msg;
  };
  // One hook's programs load: the sys_exit program (only in the bpf_loop builds), or the pairs.
  bpf_object* obj = *s->skeleton->obj;
  bpf_program* raw_exit = bpf_object__find_program_by_name(obj, "podtap_raw_sys_exit");
  if (hook == SyscallHook::kSysExit) {
    if (raw_exit == nullptr) return fail("this build has no sys_exit program");
    bpf_program* prog;
    bpf_object__for_each_program(prog, obj) {
      if (std::string_view(bpf_program__section_name(prog)).starts_with("tracepoint/syscalls/")) {
        bpf_program__set_autoload(prog, false);
      }
    }
    bpf_program__set_autoload(s->progs.podtap_sys_exit, false);
  } else if (raw_exit != nullptr) {
    bpf_program__set_autoload(raw_exit, false);
  }
  if (!opts.exec_events) bpf_program__set_autoload(s->progs.podtap_exec, false);
  s->rodata->prefix_len = opts.prefix_len;
  s->rodata->self_tgid = static_cast<uint32_t>(getpid());
  s->rodata->wakeup_bytes = opts.payload_ringbuf_bytes / 4;
  uint64_t per_check = uint64_t(std::max(libbpf_num_possible_cpus(), 1)) * PODTAP_PAYLOAD_MAX;
  s->rodata->backlog_check_every = static_cast<uint32_t>(
      std::clamp<uint64_t>(opts.payload_ringbuf_bytes / 4 / per_check, 1, 64));
  // One socket map and one set of drop counters for both objects.
  if (bpf_map__reuse_fd(s->maps.socks, bpf_map__fd(tcp->maps.socks)) != 0 ||
      bpf_map__reuse_fd(s->maps.drops, bpf_map__fd(tcp->maps.drops)) != 0 ||
      bpf_map__reuse_fd(s->maps.closed_socks, bpf_map__fd(tcp->maps.closed_socks)) != 0) {
    return fail(std::string("cannot share maps with the lifecycle programs: ") +
                std::strerror(errno));
  }
  bpf_map__set_max_entries(s->maps.payload_events, opts.payload_ringbuf_bytes);
  bpf_map__set_max_entries(s->maps.verdicts, opts.max_sockets);
  if (int err = fns.load(s); err != 0) {
    return fail(std::string("load: ") + std::strerror(-err) + " — " + LastLibbpfWarning());
  }
  // The sys_enter_* programs and the sys_exit one attach by their section names; the exit
  // program of the pairs and the uprobe programs have none and are attached by the caller.
  if (int err = fns.attach(s); err != 0) {
    return fail(std::string("attach: ") + std::strerror(-err) + " — " + LastLibbpfWarning());
  }
  out->skeleton = s->skeleton;
  out->destroy = [s, destroy = fns.destroy] { destroy(s); };
  out->payload_events = s->maps.payload_events;
  out->verdicts = s->maps.verdicts;
  out->sys_exit = s->progs.podtap_sys_exit;
  out->ssl_exit = s->progs.podtap_ssl_exit;
  out->ssl_enter = {s->progs.podtap_ssl_enter_read, s->progs.podtap_ssl_enter_write,
                    s->progs.podtap_ssl_enter_read_ex, s->progs.podtap_ssl_enter_write_ex,
                    s->progs.podtap_ssl_enter_do_handshake};
  out->go_read_enter = s->progs.podtap_go_tls_read_enter;
  out->go_read_ret = s->progs.podtap_go_tls_read_ret;
  out->go_write = s->progs.podtap_go_tls_write;
  out->go_conn_types = s->maps.go_conn_types;
  out->go_tls_calls = s->maps.go_tls_calls;
  out->execs = opts.exec_events ? s->maps.execs : nullptr;
  return "";
}

}  // namespace

std::string TcpProbes::AttachPayloadVariant(PayloadVariant v, SyscallHook hook,
                                            const ProbeOptions& opts) {
  std::string err;
  PayloadObject obj;
  switch (v) {
    case PayloadVariant::kBtfCast:
      err = LoadPayloadObject<sockdata_bpf>(
          {sockdata_bpf__open, sockdata_bpf__load, sockdata_bpf__attach, sockdata_bpf__destroy},
          hook, opts, skel_, &obj);
      break;
    case PayloadVariant::kProbeRead:
      err = LoadPayloadObject<sockdata_probe_read_bpf>(
          {sockdata_probe_read_bpf__open, sockdata_probe_read_bpf__load,
           sockdata_probe_read_bpf__attach, sockdata_probe_read_bpf__destroy},
          hook, opts, skel_, &obj);
      break;
    case PayloadVariant::kCompat:
    case PayloadVariant::kAuto:
      err = LoadPayloadObject<sockdata_compat_bpf>(
          {sockdata_compat_bpf__open, sockdata_compat_bpf__load, sockdata_compat_bpf__attach,
           sockdata_compat_bpf__destroy},
          hook, opts, skel_, &obj);
      break;
  }
  if (!err.empty()) return err;
  payload_ = std::move(obj);
  // The pairs' exit program, on each syscall's exit tracepoint (the sys_exit one is attached).
  for (const char* name : hook == SyscallHook::kPairs
                              ? std::span<const char* const>(kTracedSyscalls)
                              : std::span<const char* const>()) {
    const std::string tp = std::string("sys_exit_") + name;
    bpf_link* link = bpf_program__attach_tracepoint(payload_.sys_exit, "syscalls", tp.c_str());
    if (link == nullptr) {
      err = "attach syscalls/" + tp + ": " + std::strerror(errno);
      break;
    }
    exit_links_.push_back(link);
  }
  if (err.empty() && ring_buffer__add(rb_, bpf_map__fd(payload_.payload_events),
                                      &TcpProbes::OnSample, this) != 0) {
    err = std::string("cannot open the payload ring buffer: ") + std::strerror(errno);
  }
  if (!err.empty()) {
    for (bpf_link* link : exit_links_) bpf_link__destroy(link);
    exit_links_.clear();
    payload_.destroy();
    payload_ = PayloadObject();
  }
  return err;
}

std::string TcpProbes::AttachPayload(const ProbeOptions& opts) {
  std::vector<PayloadVariant> candidates = opts.payload_variant == PayloadVariant::kAuto
                                               ? PayloadCandidates(features_)
                                               : std::vector{opts.payload_variant};
  // Each build with each hook the options allow, the sys_exit hook first where it may load: it
  // needs tp_btf and a bpf_loop build (the compat build has none).
  std::vector<std::pair<PayloadVariant, SyscallHook>> tries;
  for (PayloadVariant v : candidates) {
    const bool has_sys_exit = v == PayloadVariant::kBtfCast || v == PayloadVariant::kProbeRead;
    if (opts.syscall_hook != SyscallHook::kPairs && (has_sys_exit && features_.tp_btf)) {
      tries.emplace_back(v, SyscallHook::kSysExit);
    } else if (opts.syscall_hook == SyscallHook::kSysExit) {
      tries.emplace_back(v, SyscallHook::kSysExit);  // fails, and says why
    }
    if (opts.syscall_hook != SyscallHook::kSysExit) tries.emplace_back(v, SyscallHook::kPairs);
  }
  const bool named =
      opts.payload_variant != PayloadVariant::kAuto || opts.syscall_hook != SyscallHook::kAuto;
  std::string last;
  for (auto [v, hook] : tries) {
    auto started = std::chrono::steady_clock::now();
    std::string err = AttachPayloadVariant(v, hook, opts);
    if (err.empty()) {
      payload_variant_ = PayloadVariantName(v);
      syscall_hook_ = SyscallHookName(hook);
      spdlog::info(
          "attached socket data probes, {} build, {}, on read, write, readv, writev, recvfrom, "
          "sendto, recvmsg, sendmsg, sendfile (prefix {} bytes, ring buffer {} bytes; loaded in "
          "{} ms)",
          payload_variant_,
          hook == SyscallHook::kSysExit ? "one program at tp_btf/sys_exit"
                                        : "entry and exit programs on each syscall's tracepoints",
          opts.prefix_len, opts.payload_ringbuf_bytes,
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                started)
              .count());
      return "";
    }
    last =
        std::string(PayloadVariantName(v)) + " build, " + SyscallHookName(hook) + " hook: " + err;
    spdlog::warn("socket data programs, {}; trying the next", last);
  }
  // A named build or hook that does not load is an error.
  if (named) return "cannot load the socket data programs (" + last + ")";
  spdlog::warn(
      "HTTP metrics off: no build of the socket data programs loads on this kernel (last: {}); "
      "TCP metrics stay exact",
      last);
  return "";
}

void TcpProbes::StopCapture(uint64_t conn_id) {
  if (payload_.verdicts == nullptr) return;
  podtap_verdict value{};
  value.verdict = PODTAP_VERDICT_STOP;
  bpf_map__update_elem(payload_.verdicts, &conn_id, sizeof(conn_id), &value, sizeof(value),
                       BPF_ANY);
}

void TcpProbes::ClearVerdict(uint64_t conn_id) {
  if (payload_.verdicts == nullptr) return;
  bpf_map__delete_elem(payload_.verdicts, &conn_id, sizeof(conn_id), 0);
}

std::string TcpProbes::AttachTls(const std::string& path, FileId id) {
  if (payload_.skeleton == nullptr) return "payload capture is off";
  static_assert(std::tuple_size_v<decltype(payload_.ssl_enter)> == kOpenSslFunctions.size());
  // SSL_read and SSL_write are in every file the finder returns; the others where the file
  // defines them (BoringSSL has no _ex forms).
  const std::optional<uint32_t> functions = OpenSslFunctionsIn(path);
  if (!functions || !HasOpenSslApi(*functions)) {
    return path + ": SSL_read and SSL_write are not both defined in it";
  }
  std::vector<bpf_link*> links;
  for (size_t i = 0; i < kOpenSslFunctions.size(); i++) {
    if ((*functions & (1u << i)) == 0) continue;
    for (bool ret : {false, true}) {
      LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = ret, .func_name = kOpenSslFunctions[i]);
      bpf_link* l = bpf_program__attach_uprobe_opts(ret ? payload_.ssl_exit : payload_.ssl_enter[i],
                                                    -1, path.c_str(), 0, &o);
      if (l == nullptr) {
        std::string err = path + ": cannot attach " + (ret ? "uretprobe" : "uprobe") + " on " +
                          kOpenSslFunctions[i] + ": " + std::strerror(errno) + " — " +
                          LastLibbpfWarning();
        for (bpf_link* done : links) bpf_link__destroy(done);
        return err;
      }
      links.push_back(l);
    }
  }
  tls_links_[id] = std::move(links);
  return "";
}

std::string TcpProbes::AttachGoTls(const std::string& path, FileId id, const GoTlsProbes& probes) {
  if (payload_.skeleton == nullptr) return "payload capture is off";
  std::vector<bpf_link*> links;
  auto attach = [&](bpf_program* prog, uint64_t offset, const char* what) {
    LIBBPF_OPTS(bpf_uprobe_opts, o);
    bpf_link* l = bpf_program__attach_uprobe_opts(prog, -1, path.c_str(), offset, &o);
    if (l == nullptr) {
      return path + ": cannot attach the uprobe at " + what + " (file offset " +
             std::to_string(offset) + "): " + std::strerror(errno) + " — " + LastLibbpfWarning();
    }
    links.push_back(l);
    return std::string();
  };
  std::string err = attach(payload_.go_write, probes.write_entry, "Write's entry");
  if (err.empty()) err = attach(payload_.go_read_enter, probes.read.entry, "Read's entry");
  for (uint64_t ret : probes.read.returns) {
    if (err.empty()) err = attach(payload_.go_read_ret, ret, "a RET of Read");
  }
  const uint8_t yes = 1;
  if (err.empty() &&
      bpf_map__update_elem(payload_.go_conn_types, &probes.tcp_conn_hash,
                           sizeof(probes.tcp_conn_hash), &yes, sizeof(yes), BPF_ANY) != 0) {
    err = path + ": cannot add its *net.TCPConn type hash: " + std::strerror(errno);
  }
  if (!err.empty()) {
    for (bpf_link* done : links) bpf_link__destroy(done);
    return err;
  }
  tls_links_[id] = std::move(links);
  return "";
}

bool TcpProbes::DetachTls(FileId id) {
  auto it = tls_links_.find(id);
  if (it == tls_links_.end()) return false;
  for (bpf_link* l : it->second) bpf_link__destroy(l);
  tls_links_.erase(it);
  return true;
}

size_t TcpProbes::SweepGoTlsCalls() {
  if (payload_.go_tls_calls == nullptr) return 0;
  std::vector<podtap_go_tls_key> gone;
  std::set<uint32_t> alive, dead;
  podtap_go_tls_key key{};
  const podtap_go_tls_key* prev = nullptr;
  // Bounded by the map's size: a walk that meets entries added meanwhile still ends.
  for (size_t i = 0; i < PODTAP_GO_TLS_CALLS; i++) {
    if (bpf_map__get_next_key(payload_.go_tls_calls, prev, &key, sizeof(key)) != 0) break;
    prev = &key;
    if (alive.count(key.tgid) != 0) continue;
    if (dead.count(key.tgid) == 0) {
      if (access(("/proc/" + std::to_string(key.tgid)).c_str(), F_OK) == 0) {
        alive.insert(key.tgid);
        continue;
      }
      dead.insert(key.tgid);
    }
    gone.push_back(key);
  }
  size_t deleted = 0;
  for (const podtap_go_tls_key& k : gone) {
    deleted += bpf_map__delete_elem(payload_.go_tls_calls, &k, sizeof(k), 0) == 0 ? 1 : 0;
  }
  return deleted;
}

namespace {

// Detaching one tracepoint program waits for the kernel's RCU grace periods
// (tens of milliseconds); the socket data object alone has 18 of them. Their
// links are destroyed from a thread each, so the waits overlap and shutdown
// takes one grace period instead of the sum.
void DetachAll(std::initializer_list<bpf_object_skeleton*> skeletons,
               std::vector<bpf_link*>* others) {
  std::vector<std::thread> threads;
  for (bpf_link*& link : *others) {
    threads.emplace_back([&link] {
      bpf_link__destroy(link);
      link = nullptr;
    });
  }
  for (bpf_object_skeleton* s : skeletons) {
    if (s == nullptr) continue;
    for (int i = 0; i < s->prog_cnt; i++) {
      bpf_link** link = s->progs[i].link;
      if (*link == nullptr) continue;
      threads.emplace_back([link] {
        bpf_link__destroy(*link);
        *link = nullptr;
      });
    }
  }
  for (auto& t : threads) t.join();
}

}  // namespace

TcpProbes::~TcpProbes() {
  std::vector<bpf_link*> links = std::move(exit_links_);
  for (auto& [id, file_links] : tls_links_) {
    links.insert(links.end(), file_links.begin(), file_links.end());
  }
  DetachAll({skel_ != nullptr ? skel_->skeleton : nullptr, payload_.skeleton}, &links);
  if (rb_ != nullptr) ring_buffer__free(rb_);
  if (payload_.destroy) payload_.destroy();
  if (skel_ != nullptr) tcp_bpf__destroy(skel_);
}

int TcpProbes::OnSample(void* ctx, void* data, size_t size) {
  static_cast<TcpProbes*>(ctx)->on_event_(data, size);
  return 0;
}

int TcpProbes::Poll(int timeout_ms) {
  int n = ring_buffer__poll(rb_, timeout_ms);
  if (n < 0) return n;
  // The payload ring wakes us only when its backlog grows; drain it (and
  // anything else that arrived) on every turn of the loop.
  int more = ring_buffer__consume(rb_);
  if (more < 0) return more;
  // After the ring: a parked close was written after every ring record of
  // its connection, so its open is in this batch or an earlier one. The
  // map's buckets are scanned only when the kernel parked something (it
  // counts a full ring after parking), and once a second regardless.
  ReadDrops();
  const uint64_t full = drops_.ringbuf_full;
  auto now = std::chrono::steady_clock::now();
  if (now >= next_misses_) {
    next_misses_ = now + std::chrono::seconds(1);
    drops_.program_nested = ProgramMisses();
  }
  if (full == full_at_drain_ && now < next_drain_) return n + more;
  full_at_drain_ = full;
  next_drain_ = now + std::chrono::seconds(1);
  int parked = DrainPendingCloses();
  return parked < 0 ? parked : n + more + parked;
}

int TcpProbes::DrainPendingCloses() {
  constexpr uint32_t kChunk = 256;
  std::array<uint64_t, kChunk> keys;
  std::array<podtap_tcp_event, kChunk> values;
  // The hash map's batch position (a bucket index); in_batch is null on the first call.
  uint64_t position = 0;
  int fd = bpf_map__fd(skel_->maps.pending_closes);
  int total = 0;
  // Bounded: every round deletes what it returns, and the map holds at most
  // PODTAP_PENDING_CLOSES entries plus what the kernel adds meanwhile.
  for (int round = 0; round < 2 * PODTAP_PENDING_CLOSES / int(kChunk) + 1; round++) {
    uint32_t count = kChunk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_and_delete_batch(fd, round == 0 ? nullptr : &position, &position,
                                              keys.data(), values.data(), &count, &opts);
    for (uint32_t i = 0; i < count; i++) {
      if (values[i].kind == PODTAP_EV_TCP_CONNECT_FAIL) {
        recovered_.connect_fails++;
      } else {
        recovered_.closes++;
      }
      on_event_(&values[i], sizeof(values[i]));
    }
    total += static_cast<int>(count);
    if (err == -ENOENT) break;  // the last bucket was read
    if (err < 0) return err;
  }
  return total;
}

uint64_t TcpProbes::SumDrop(uint32_t reason) const {
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> values(ncpu > 0 ? static_cast<size_t>(ncpu) : 1);
  uint64_t total = 0;
  if (bpf_map__lookup_elem(skel_->maps.drops, &reason, sizeof(reason), values.data(),
                           values.size() * sizeof(uint64_t), 0) == 0) {
    for (uint64_t v : values) total += v;
  }
  return total;
}

void TcpProbes::ReadDrops() {
  std::array<uint64_t, PODTAP_DROP__COUNT> sum{};
  bool read = false;
  if (drop_batch_) {
    const size_t ncpu = static_cast<size_t>(std::max(libbpf_num_possible_cpus(), 1));
    drop_keys_.resize(PODTAP_DROP__COUNT);
    drop_values_.resize(PODTAP_DROP__COUNT * ncpu);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    uint32_t out_batch = 0, count = PODTAP_DROP__COUNT;
    int err = bpf_map_lookup_batch(bpf_map__fd(skel_->maps.drops), nullptr, &out_batch,
                                   drop_keys_.data(), drop_values_.data(), &count, &opts);
    // ENOENT: the batch reached the array's end, which it does here.
    if ((err == 0 || err == -ENOENT) && count == PODTAP_DROP__COUNT) {
      for (uint32_t i = 0; i < count; i++) {
        if (drop_keys_[i] >= PODTAP_DROP__COUNT) continue;
        for (size_t cpu = 0; cpu < ncpu; cpu++) sum[drop_keys_[i]] += drop_values_[i * ncpu + cpu];
      }
      read = true;
    } else {
      drop_batch_ = false;
      spdlog::info("drop counters: the kernel refused a batch lookup ({}); one lookup each",
                   err < 0 ? std::strerror(-err) : "short read");
    }
  }
  if (!read) {
    for (uint32_t r = 0; r < PODTAP_DROP__COUNT; r++) sum[r] = SumDrop(r);
  }
  drops_.ringbuf_full = sum[PODTAP_DROP_RINGBUF_FULL];
  drops_.sockmap_full = sum[PODTAP_DROP_SOCKMAP_FULL];
  drops_.payload_ringbuf_full = sum[PODTAP_DROP_PAYLOAD_RINGBUF_FULL];
  drops_.syscall_map_full = sum[PODTAP_DROP_SYSCALL_MAP_FULL];
  drops_.h2_capture_full = sum[PODTAP_DROP_H2_CAPTURE_FULL];
  drops_.h2_walk_lost = sum[PODTAP_DROP_H2_WALK_LOST];
  drops_.h2_walk_order = sum[PODTAP_DROP_H2_WALK_ORDER];
  drops_.tls_unmapped = sum[PODTAP_DROP_TLS_UNMAPPED];
  drops_.close_map_full = sum[PODTAP_DROP_CLOSE_MAP_FULL];
  drops_.exec_map_full = sum[PODTAP_DROP_EXEC_MAP_FULL];
}

// A tracing program does not run nested on one CPU (a tp_btf program inside itself; a classic
// tracepoint or uprobe program inside any BPF program): when its hook fires while it runs there
// (a TCP state change in a softirq that interrupted the lifecycle program in a syscall), the
// kernel skips that run and counts it in the program's recursion_misses. For the lifecycle
// program that is an open, close or failed connect lost. Kernels that do not count such runs
// report 0.
uint64_t TcpProbes::ProgramMisses() {
  uint64_t total = 0;
  const std::array<const bpf_object_skeleton*, 2> skeletons = {
      skel_ != nullptr ? skel_->skeleton : nullptr, payload_.skeleton};
  for (const bpf_object_skeleton* s : skeletons) {
    if (s == nullptr) continue;
    for (int i = 0; i < s->prog_cnt; i++) {
      const int fd = bpf_program__fd(*s->progs[i].prog);
      if (fd < 0) continue;  // not loaded: another hook's program, or one left off
      bpf_prog_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
        total += info.recursion_misses;
      } else if (!misses_warned_) {
        misses_warned_ = true;
        spdlog::warn(
            "cannot read the statistics of BPF program {}: {}; runs the kernel skipped "
            "are not counted in podtap_events_lost_total{{reason=\"program_nested\"}}",
            bpf_program__name(*s->progs[i].prog), std::strerror(errno));
      }
    }
  }
  return total;
}

std::optional<std::vector<pid_t>> TcpProbes::TakeExecs() {
  if (payload_.execs == nullptr) return std::nullopt;
  // Read before the map: an exec refused after this read shows at the next call, whose walk of
  // /proc then covers it.
  const uint64_t full = SumDrop(PODTAP_DROP_EXEC_MAP_FULL);
  const int fd = bpf_map__fd(payload_.execs);
  const size_t cap = bpf_map__max_entries(payload_.execs);
  std::vector<pid_t> pids;
  uint32_t key = 0;
  uint32_t next = 0;
  // Keys first, then their deletion: an exec after a key is read and before it is deleted is
  // covered all the same, since the caller reads the process's maps after this returns.
  while (pids.size() < cap && bpf_map_get_next_key(fd, pids.empty() ? nullptr : &key, &next) == 0) {
    pids.push_back(static_cast<pid_t>(next));
    key = next;
  }
  for (pid_t pid : pids) {
    const uint32_t k = static_cast<uint32_t>(pid);
    bpf_map_delete_elem(fd, &k);
  }
  const bool complete = full == exec_full_seen_;
  exec_full_seen_ = full;
  if (!complete) return std::nullopt;
  return pids;
}

}  // namespace podtap
