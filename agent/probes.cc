// libbpf skeleton handling for bpf/tcp.bpf.c.
#include "agent/probes.h"

#include <bpf/bpf.h>
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
#include <thread>
#include <vector>

#include "sockdata.skel.h"
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
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  std::string line(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1) : 0);
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

std::variant<std::unique_ptr<TcpProbes>, std::string> TcpProbes::Attach(const ProbeOptions& opts,
                                                                        EventFn on_event) {
  if (opts.mode != ProbeMode::kTracepoint) {
    auto r = TryAttach(opts, /*btf=*/true, on_event);
    if (opts.mode == ProbeMode::kTpBtf || std::holds_alternative<std::unique_ptr<TcpProbes>>(r)) {
      return r;
    }
    spdlog::warn(
        "tp_btf/inet_sock_set_state unavailable ({}); falling back to the "
        "sock/inet_sock_set_state tracepoint",
        std::get<std::string>(r));
  }
  return TryAttach(opts, /*btf=*/false, on_event);
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
  if (opts.capture_payload) {
    if (std::string err = p->AttachPayload(opts); !err.empty()) return err;
  } else {
    spdlog::info("payload capture off: TCP metrics only");
  }
  return p;
}

std::string TcpProbes::AttachPayload(const ProbeOptions& opts) {
  data_skel_ = sockdata_bpf__open();
  if (data_skel_ == nullptr) {
    return std::string("cannot open BPF object sockdata.bpf.o: ") + std::strerror(errno);
  }
  data_skel_->rodata->prefix_len = opts.prefix_len;
  data_skel_->rodata->self_tgid = static_cast<uint32_t>(getpid());
  data_skel_->rodata->wakeup_bytes = opts.payload_ringbuf_bytes / 4;
  uint64_t per_check = uint64_t(std::max(libbpf_num_possible_cpus(), 1)) * PODTAP_PAYLOAD_MAX;
  data_skel_->rodata->backlog_check_every = static_cast<uint32_t>(
      std::clamp<uint64_t>(opts.payload_ringbuf_bytes / 4 / per_check, 1, 64));
  // One socket map and one set of drop counters for both objects.
  if (bpf_map__reuse_fd(data_skel_->maps.socks, bpf_map__fd(skel_->maps.socks)) != 0 ||
      bpf_map__reuse_fd(data_skel_->maps.drops, bpf_map__fd(skel_->maps.drops)) != 0 ||
      bpf_map__reuse_fd(data_skel_->maps.closed_socks, bpf_map__fd(skel_->maps.closed_socks)) !=
          0) {
    return std::string("cannot share maps with the socket data programs: ") + std::strerror(errno);
  }
  bpf_map__set_max_entries(data_skel_->maps.payload_events, opts.payload_ringbuf_bytes);
  bpf_map__set_max_entries(data_skel_->maps.verdicts, opts.max_sockets);
  if (int err = sockdata_bpf__load(data_skel_); err != 0) {
    return std::string("cannot load the socket data programs (syscalls/sys_exit_*): ") +
           std::strerror(-err) + " — " + LastLibbpfWarning();
  }
  if (int err = sockdata_bpf__attach(data_skel_); err != 0) {
    return std::string("cannot attach the socket data programs (syscalls/sys_*_read ...): ") +
           std::strerror(-err) + " — " + LastLibbpfWarning();
  }
  if (ring_buffer__add(rb_, bpf_map__fd(data_skel_->maps.payload_events), &TcpProbes::OnSample,
                       this) != 0) {
    return std::string("cannot open the payload ring buffer: ") + std::strerror(errno);
  }
  spdlog::info(
      "attached socket data probes on read, write, readv, writev, recvfrom, sendto, "
      "recvmsg, sendmsg, sendfile (prefix {} bytes, ring buffer {} bytes)",
      opts.prefix_len, opts.payload_ringbuf_bytes);
  return "";
}

void TcpProbes::StopCapture(uint64_t conn_id) {
  if (data_skel_ == nullptr) return;
  podtap_verdict value{};
  value.verdict = PODTAP_VERDICT_STOP;
  bpf_map__update_elem(data_skel_->maps.verdicts, &conn_id, sizeof(conn_id), &value, sizeof(value),
                       BPF_ANY);
}

void TcpProbes::ClearVerdict(uint64_t conn_id) {
  if (data_skel_ == nullptr) return;
  bpf_map__delete_elem(data_skel_->maps.verdicts, &conn_id, sizeof(conn_id), 0);
}

std::string TcpProbes::AttachTls(const std::string& path) {
  if (data_skel_ == nullptr) return "payload capture is off";
  struct Probe {
    const char* func;
    bpf_program* enter;
    bpf_program* exit;
  };
  auto& p = data_skel_->progs;
  const Probe probes[] = {
      {"SSL_read", p.podtap_ssl_enter_read, p.podtap_ssl_exit_read},
      {"SSL_write", p.podtap_ssl_enter_write, p.podtap_ssl_exit_write},
      {"SSL_read_ex", p.podtap_ssl_enter_read_ex, p.podtap_ssl_exit_read_ex},
      {"SSL_write_ex", p.podtap_ssl_enter_write_ex, p.podtap_ssl_exit_write_ex},
      {"SSL_do_handshake", p.podtap_ssl_enter_do_handshake, p.podtap_ssl_exit_do_handshake},
  };
  std::vector<bpf_link*> links;
  for (const Probe& probe : probes) {
    for (bool ret : {false, true}) {
      LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = ret, .func_name = probe.func);
      bpf_link* l =
          bpf_program__attach_uprobe_opts(ret ? probe.exit : probe.enter, -1, path.c_str(), 0, &o);
      if (l == nullptr) {
        std::string err = path + ": cannot attach " + (ret ? "uretprobe" : "uprobe") + " on " +
                          probe.func + ": " + std::strerror(errno) + " — " + LastLibbpfWarning();
        for (bpf_link* done : links) bpf_link__destroy(done);
        return err;
      }
      links.push_back(l);
    }
  }
  tls_links_.insert(tls_links_.end(), links.begin(), links.end());
  return "";
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
  DetachAll({skel_ != nullptr ? skel_->skeleton : nullptr,
             data_skel_ != nullptr ? data_skel_->skeleton : nullptr},
            &tls_links_);
  if (rb_ != nullptr) ring_buffer__free(rb_);
  if (data_skel_ != nullptr) sockdata_bpf__destroy(data_skel_);
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
  uint64_t full = SumDrop(PODTAP_DROP_RINGBUF_FULL);
  auto now = std::chrono::steady_clock::now();
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

TcpProbes::Drops TcpProbes::ReadDrops() const {
  Drops d;
  d.ringbuf_full = SumDrop(PODTAP_DROP_RINGBUF_FULL);
  d.sockmap_full = SumDrop(PODTAP_DROP_SOCKMAP_FULL);
  d.payload_ringbuf_full = SumDrop(PODTAP_DROP_PAYLOAD_RINGBUF_FULL);
  d.syscall_map_full = SumDrop(PODTAP_DROP_SYSCALL_MAP_FULL);
  d.h2_capture_full = SumDrop(PODTAP_DROP_H2_CAPTURE_FULL);
  d.h2_walk_lost = SumDrop(PODTAP_DROP_H2_WALK_LOST);
  d.tls_unmapped = SumDrop(PODTAP_DROP_TLS_UNMAPPED);
  d.close_map_full = SumDrop(PODTAP_DROP_CLOSE_MAP_FULL);
  return d;
}

}  // namespace podtap
