// The agent's event thread: start-up (probes, the connections open at start), the loop that
// drains the kernel's rings into the pipeline in batches and applies the control thread's
// updates between them (agent/agent_control.cc), the CPU budget, and what the exporter reads.
#include "agent/agent.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <iterator>
#include <set>
#include <span>
#include <tuple>
#include <variant>

#include "agent/kernel/sock_diag.h"
#include "agent/metadata/cri_source.h"
#include "agent/metadata/proc_pods.h"

namespace podtap {

Agent::Agent(AgentOptions opts)
    : opts_(std::move(opts)),
      agg_(opts_.aggregator),
      taps_(opts_.taps),
      recorder_(&taps_),
      pipeline_(&agg_, opts_.max_connections, opts_.pod_label_allowlist,
                opts_.probes.capture_payload),
      guard_(opts_.max_cpu) {
  agg_.self().connections_max = opts_.max_connections;
  agg_.self().cpu_budget_cores = opts_.max_cpu;
  pipeline_.SetRoutes(opts_.routes);
  pipeline_.SetClusterDomain(opts_.cluster_domain);
  pipeline_.SetObserver(&recorder_);
  // Each takes the event loop's lock for its own copy, as short as it can be.
  sources_.Register([this](Snapshot* out) {
    std::lock_guard<std::mutex> lock(mu_);
    Snapshot own = agg_.Collect();
    std::move(own.families.begin(), own.families.end(), std::back_inserter(out->families));
  });
  sources_.Register([this](Snapshot* out) {
    std::lock_guard<std::mutex> lock(mu_);
    AppendQueryMetrics(recorder_, taps_, out);
  });
  if (opts_.cri_socket) {
    pods_ = std::make_unique<CriPodSource>(*opts_.cri_socket);
    pods_source_name_ = "cri";
  } else if (!opts_.pods_file.empty()) {
    pods_ = std::make_unique<PodsFileSource>(opts_.pods_file);
    pods_source_name_ = "pods_file";
  } else if (!opts_.kubernetes) {
    pods_loaded_ = true;
  }
  if (opts_.kubernetes) {
    // With the API to name them, pods can be found from /proc while the
    // runtime cannot be reached.
    std::unique_ptr<PodSource> fallback;
    if (opts_.cri_socket) fallback = std::make_unique<ProcPodSource>();
    auto kube =
        std::make_unique<KubePodSource>(std::move(pods_), *opts_.kubernetes, std::move(fallback));
    kube_ = kube.get();
    pods_ = std::move(kube);
  }
}

std::string Agent::Start() {
  // Before Run, this thread is the control thread and the event thread both,
  // and nothing can ask it to stop.
  const std::atomic<bool> no_stop{false};
  if (pods_) {
    spdlog::info("pod metadata from {}", pods_->Describe());
    PollPods(no_stop);
    ApplyMail();
  } else {
    spdlog::info("no pod metadata source: every connection counts as a host process");
  }
  // The kernel names exec'd processes by their pids in the initial pid namespace: they are
  // /proc's only when /proc is that namespace's (the DaemonSet's hostPID).
  tls_exec_events_ = opts_.tls_probes && InitialPidNamespace("/proc");
  ProbeOptions probe_opts = opts_.probes;
  probe_opts.exec_events = tls_exec_events_;
  auto r = TcpProbes::Attach(probe_opts, [this](const void* data, size_t size) {
    batch_.push_back({DecodeEvent(data, size, &arena_)});
  });
  if (auto* err = std::get_if<std::string>(&r)) return *err;
  probes_ = std::move(std::get<std::unique_ptr<TcpProbes>>(r));
  if (!probes_->payload_attached()) pipeline_.DisableCapture();
  {
    std::lock_guard<std::mutex> lock(mu_);
    SelfStats& self = agg_.self();
    self.probe_mode = probes_->mode();
    self.payload_probes = probes_->payload_variant();
    self.syscall_hook = probes_->syscall_hook();
    const KernelFeatures& f = probes_->features();
    self.kernel_features = {{"ringbuf", f.ringbuf},
                            {"task_storage", f.task_storage},
                            {"bpf_loop", f.bpf_loop},
                            {"bpf_rdonly_cast", f.rdonly_cast}};
    // tp_btf is known only when it was tried.
    if (opts_.probes.mode != ProbeMode::kTracepoint) {
      self.kernel_features.emplace_back("tp_btf", f.tp_btf);
    }
  }
  if (opts_.tls_probes && probes_->payload_attached()) {
    if (tls_exec_events_) {
      spdlog::info("TLS libraries: new programs from the kernel's exec events, every second");
    } else {
      spdlog::info(
          "TLS libraries: /proc is not the initial pid namespace's, so the kernel's exec events "
          "cannot name its processes; every process is walked each second instead");
    }
  }
  PollTlsLibraries(true, no_stop);  // every process, before the control thread's calls
  ApplyMail();
  attached_ = true;
  return "";
}

// The longest the event loop waits for records between two turns.
constexpr int kTurnMs = 200;

void Agent::Run(const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  auto next_expiry = Clock::now() + std::chrono::seconds(5);
  auto next_guard = Clock::now() + std::chrono::seconds(1);
  AdoptOpenConnections();
  control_ = std::thread([this, &stop] { RunControl(stop); });
  while (!stop.load()) {
    // The timeout bounds how stale socket data gets between wakeups, and how
    // long the control thread's updates wait. Lifecycle records wake the loop
    // at once and the socket data ring once a quarter of it is queued, so the
    // timeout sets the pace only below that: each turn costs a few syscalls
    // whatever it brings (the ring poll, the drop counters), so fewer turns
    // are most of what an idle agent, or one at a low request rate, saves.
    int n = probes_->Poll(kTurnMs);
    if (n < 0 && n != -EINTR) {
      spdlog::error("ring buffer poll failed: {}", std::strerror(-n));
    }
    ApplyBatch();
    ApplyMail();
    auto now = Clock::now();
    if (now >= next_expiry) {
      ExpireSeries();
      next_expiry = now + std::chrono::seconds(5);
    }
    if (opts_.max_cpu > 0 && now >= next_guard) {
      GuardCpu();
      next_guard = now + std::chrono::seconds(1);
    }
  }
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    control_wake_.notify_all();
  }
  control_.join();
}

void Agent::ApplyMail() {
  std::lock_guard<std::mutex> lock(mu_);
  mail_.Drain();
}

void Agent::ExpireSeries() {
  std::lock_guard<std::mutex> lock(mu_);
  auto pod_exists = [this](const Labels& labels) { return LabelSetPodsExist(labels, live_pods_); };
  size_t removed =
      agg_.Expire(std::chrono::steady_clock::now(), opts_.series_retention, pod_exists);
  if (removed > 0) spdlog::debug("expired {} idle series of pods that are gone", removed);
}

void Agent::GuardCpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval& t) { return uint64_t(t.tv_sec) * 1'000'000'000 + t.tv_usec * 1000; };
  const uint64_t wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  const double share = guard_.Observe(ns(ru.ru_utime) + ns(ru.ru_stime), wall_ns);
  size_t shed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shed = pipeline_.Shed(share);
    agg_.self().cpu_used_cores = guard_.used();
  }
  if (shed == 0) return;
  shed_total_ += shed;
  shed_at_millicores_ = static_cast<uint64_t>(guard_.used() * 1000);
  spdlog::warn(
      "agent CPU at {:.2f} cores over its budget of {:.2f} (--max-cpu): HTTP capture shed on the "
      "{} busiest connections ({:.0f}% of their socket data records); TCP metrics stay exact",
      guard_.used(), guard_.budget(), shed, share * 100);
}

namespace {

uint64_t Timestamp(const DecodedEvent& ev) {
  if (const auto* o = std::get_if<TcpOpen>(&ev)) return o->open_ns;
  if (const auto* c = std::get_if<TcpClose>(&ev)) return c->ts_ns;
  if (const auto* f = std::get_if<TcpConnectFail>(&ev)) return f->ts_ns;
  if (const auto* p = std::get_if<PayloadEvent>(&ev)) return p->ts_ns;
  return 0;
}

}  // namespace

void Agent::ApplyBatch() {
  const TcpProbes::Drops& drops = probes_->drops();  // as the Poll before this read them
  // Lifecycle and payload records come from two ring buffers; in time order
  // an open precedes its connection's data and a close follows it.
  for (auto& item : retry_) {
    auto& p = std::get<PayloadEvent>(item.event);
    uint32_t offset = static_cast<uint32_t>(arena_.size());
    arena_.insert(arena_.end(), retry_arena_.begin() + p.offset,
                  retry_arena_.begin() + p.offset + p.captured);
    p.offset = offset;
    batch_.push_back(std::move(item));
  }
  retry_.clear();
  retry_arena_.clear();
  // Ties keep ring order (the index breaks them), as a stable sort would.
  order_.clear();
  for (uint32_t i = 0; i < batch_.size(); ++i) order_.emplace_back(Timestamp(batch_[i].event), i);
  std::sort(order_.begin(), order_.end());

  std::vector<TcpPipeline::VerdictOp> verdicts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [ts, index] : order_) {
      const BatchItem& item = batch_[index];
      const DecodedEvent& ev = item.event;
      if (const auto* o = std::get_if<TcpOpen>(&ev)) {
        pipeline_.OnOpen(*o);
      } else if (const auto* c = std::get_if<TcpClose>(&ev)) {
        pipeline_.OnClose(*c);
      } else if (const auto* f = std::get_if<TcpConnectFail>(&ev)) {
        pipeline_.OnConnectFail(*f);
      } else if (const auto* p = std::get_if<PayloadEvent>(&ev)) {
        std::span<const uint8_t> bytes(arena_.data() + p->offset, p->captured);
        if (pipeline_.OnPayload(*p, bytes)) continue;
        if (item.retried) {
          agg_.self().payload_unmatched++;
          continue;
        }
        PayloadEvent moved = *p;
        moved.offset = static_cast<uint32_t>(retry_arena_.size());
        retry_arena_.insert(retry_arena_.end(), bytes.begin(), bytes.end());
        retry_.push_back({moved, true});
      } else {
        agg_.self().decode_errors++;
        spdlog::debug("dropped an event: {}", std::get<DecodeError>(ev).message);
      }
    }
    const uint64_t now_ns = MonotonicNs();
    pipeline_.FlushPendingOpens(now_ns);
    pipeline_.FinishCloses(now_ns);
    recorder_.Age(now_ns);
    agg_.self().events_lost_ringbuf = drops.ringbuf_full;
    agg_.self().kernel_sockmap_full = drops.sockmap_full;
    agg_.self().payload_lost_ringbuf = drops.payload_ringbuf_full;
    agg_.self().payload_lost_args = drops.syscall_map_full;
    agg_.self().h2_capture_full = drops.h2_capture_full;
    agg_.self().h2_walk_lost = drops.h2_walk_lost;
    agg_.self().h2_walk_out_of_order = drops.h2_walk_order;
    agg_.self().tls_unmapped = drops.tls_unmapped;
    agg_.self().close_map_full = drops.close_map_full;
    agg_.self().exec_map_full = drops.exec_map_full;
    agg_.self().program_nested = drops.program_nested;
    agg_.self().closes_recovered = probes_->recovered().closes;
    agg_.self().connect_fails_recovered = probes_->recovered().connect_fails;
    agg_.self().connections_tracked = pipeline_.tracked();
    verdicts = pipeline_.TakeVerdicts();
  }
  batch_.clear();
  arena_.clear();
  for (const auto& v : verdicts) {
    switch (v.kind) {
      case TcpPipeline::VerdictOp::Kind::kStop:
        probes_->StopCapture(v.conn_id);
        break;
      case TcpPipeline::VerdictOp::Kind::kForget:
        probes_->ClearVerdict(v.conn_id);
        break;
    }
  }
}

void Agent::AdoptOpenConnections() {
  std::vector<std::pair<uint32_t, std::string>> netns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    netns = pipeline_.pods().Netns();
  }
  struct stat host {};
  netns.emplace_back(stat("/proc/self/ns/net", &host) == 0 ? host.st_ino : 0, "");
  auto dump_all = [&netns](bool warn) {
    std::vector<std::pair<uint32_t, std::vector<DiagSocket>>> dumps;
    for (const auto& [ino, path] : netns) {
      auto r = DumpSockets(path);
      if (auto* err = std::get_if<std::string>(&r)) {
        if (warn) {
          spdlog::warn("connections open at start in {}: {}", path.empty() ? "host" : path, *err);
        }
        continue;
      }
      dumps.emplace_back(ino, std::move(std::get<std::vector<DiagSocket>>(r)));
    }
    return dumps;
  };
  // Connections the probes saw open are not adopted: the kernel's events
  // track them. Every event emitted before the first dump is applied after
  // it; a connection is adopted only when both dumps list it and it is not
  // tracked then. One dump alone would adopt a connection that opened after
  // the probes were attached and closed before its events were applied (it
  // would never close again), and the second alone one that opened between
  // the two (its open event is not applied yet). Tracked connections are
  // known by their addresses, not their ids: with the tracepoint hook the
  // kernel names a connection whose cookie did not exist yet with an id of
  // its own, and the dump then makes the cookie.
  const auto first = dump_all(true);
  probes_->Poll(0);
  ApplyBatch();
  const auto dumps = dump_all(false);
  std::set<std::pair<uint32_t, uint64_t>> in_first;
  for (const auto& [ino, sockets] : first) {
    for (const DiagSocket& s : sockets) in_first.emplace(ino, s.counters.conn_id);
  }
  const uint64_t now_ns = MonotonicNs();
  size_t adopted = 0;
  std::lock_guard<std::mutex> lock(mu_);
  using Tuple = std::tuple<uint32_t, bool, std::array<uint8_t, 16>, uint16_t, bool,
                           std::array<uint8_t, 16>, uint16_t>;
  std::set<Tuple> tracked;
  pipeline_.conns().ForEach([&tracked](const Conn& c) {
    tracked.emplace(c.netns_ino, c.local.v6, c.local.bytes, c.local_port, c.remote.v6,
                    c.remote.bytes, c.remote_port);
  });
  for (const auto& [ino, sockets] : dumps) {
    // Who connected is not in a dump: a connection on a port the namespace
    // listens on was accepted.
    std::set<uint16_t> listening;
    for (const DiagSocket& s : sockets) {
      if (s.listening) listening.insert(s.local_port);
    }
    for (const DiagSocket& s : sockets) {
      if (s.listening || in_first.count({ino, s.counters.conn_id}) == 0 ||
          tracked.count({ino, s.local.v6, s.local.bytes, s.local_port, s.remote.v6, s.remote.bytes,
                         s.remote_port}) > 0) {
        continue;
      }
      TcpOpen o;
      o.conn_id = s.counters.conn_id;
      o.open_ns = now_ns;
      o.cgroup_id = s.cgroup_id;
      o.netns_ino = ino;
      o.direction = listening.count(s.local_port) > 0 ? Direction::kInbound : Direction::kOutbound;
      o.local = s.local;
      o.remote = s.remote;
      o.local_port = s.local_port;
      o.remote_port = s.remote_port;
      o.base_acked = s.counters.bytes_acked;
      o.base_received = s.counters.bytes_received;
      if (pipeline_.Adopt(o)) adopted++;
    }
  }
  spdlog::info("tracking {} connections that were open at start", adopted);
}

void Agent::DetachProbes() {
  probes_.reset();
  attached_ = false;
  spdlog::info("kernel programs detached");
}

void Agent::ReloadRoutes(std::optional<RouteTable> routes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!routes) {
    agg_.self().config_reloads_error++;
    return;
  }
  pipeline_.SetRoutes(std::move(*routes));
  agg_.self().config_reloads_ok++;
}

Snapshot Agent::Collect() {
  Snapshot s;
  sources_.AppendTo(&s);
  return s;
}

std::string Agent::NotReadyReason() const {
  if (!attached_) return "kernel probes not attached yet";
  if (!pods_loaded_) {
    std::lock_guard<std::mutex> lock(status_mu_);
    return "pod metadata not loaded yet: " + pods_describe_;
  }
  return "";
}

std::string Agent::ReadyDetail() const {
  std::string detail;
  // KubePodSource::Detail is safe from any thread (the reflectors' state).
  if (kube_ != nullptr) detail = "kubernetes: " + kube_->Detail();
  if (const uint64_t shed = shed_total_.load(); shed > 0) {
    if (!detail.empty()) detail += "\n";
    detail += fmt::format(
        "overload: HTTP capture shed on {} connections so far to stay within --max-cpu {:.2f} "
        "(last at {:.2f} cores); TCP metrics exact",
        shed, opts_.max_cpu, static_cast<double>(shed_at_millicores_.load()) / 1000);
  }
  return detail;
}

}  // namespace podtap
