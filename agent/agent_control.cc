// The agent's control thread: everything that may block, on its own schedules (pod metadata from
// the container runtime and the Kubernetes API, TLS library scans of /proc and the probes they
// attach, live byte counters from sock_diag in every pod namespace), each result posted to the
// mailbox the event thread applies between batches (agent/agent.cc).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "agent/agent.h"
#include "agent/kernel/sock_diag.h"

namespace podtap {

void Agent::RunControl(const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  auto next_pods = Clock::now() + std::chrono::seconds(1);
  auto next_tls = Clock::now() + std::chrono::seconds(1);
  auto next_tls_all = Clock::now() + opts_.tls_rescan_interval;
  auto next_diag = Clock::now() + opts_.diag_interval;
  while (!stop.load()) {
    auto now = Clock::now();
    if (pods_ && now >= next_pods) {
      PollPods(stop);
      next_pods = Clock::now() + std::chrono::seconds(1);
    }
    if (now >= next_tls) {
      // New processes every second; every process's maps every --tls-rescan-interval (dlopen'd
      // libraries, files no process maps any more).
      const bool all = now >= next_tls_all;
      PollTlsLibraries(all, stop);
      next_tls = Clock::now() + std::chrono::seconds(1);
      if (all) next_tls_all = Clock::now() + opts_.tls_rescan_interval;
    }
    if (opts_.diag_interval.count() > 0 && now >= next_diag) {
      PollLiveCounters(stop);
      next_diag = Clock::now() + opts_.diag_interval;
    }
    // Asleep until the next schedule is due (once a second at most), or the agent stops.
    auto due = std::min(next_tls, pods_ ? next_pods : next_tls);
    if (opts_.diag_interval.count() > 0) due = std::min(due, next_diag);
    std::unique_lock<std::mutex> lock(control_mu_);
    control_wake_.wait_until(lock, due, [&stop] { return stop.load(); });
  }
}

void Agent::PollTlsLibraries(bool all, const std::atomic<bool>& stop) {
  if (!opts_.tls_probes || !probes_->payload_attached()) return;
  // Every process on `all` (the first call, at start, is one) and when the kernel's exec map
  // overflowed; otherwise the processes that exec'd.
  std::optional<std::vector<pid_t>> execs;
  if (tls_exec_events_) execs = probes_->TakeExecs();
  const std::vector<TlsLibraryFinder::OpenSslFile> found =
      all || !execs ? tls_libs_.FindNew(all) : tls_libs_.FindIn(*execs);
  uint64_t attached = 0, failed = 0, detached = 0;
  for (const TlsLibraryFinder::OpenSslFile& file : found) {
    std::string err = probes_->AttachTls(file.path, file.id);
    if (err.empty()) {
      attached++;
      spdlog::info("TLS plaintext probes attached to {}", file.path);
    } else {
      failed++;
      spdlog::warn("TLS plaintext probes not attached: {}", err);
    }
  }
  // Files no process maps any more (their processes exited, or a new file replaced them at
  // their path): their probes would keep them, and their inodes, alive for nothing.
  for (const TlsLibraryFinder::GoneFile& file : tls_libs_.gone()) {
    if (!probes_->DetachTls(file.id)) continue;
    spdlog::info("TLS {}probes detached from {}: no process maps that file any more",
                 file.go ? "Go " : "", file.path);
    if (!file.go) detached++;
  }
  for (const TlsLibraryFinder::GoProgram& go : tls_libs_.new_go_tls()) {
    const std::variant<GoTlsProbes, std::string> found = GoTlsProbesIn(go.path, go.version);
    if (const auto* why = std::get_if<std::string>(&found)) {
      spdlog::warn(
          "{} is a Go program ({}) with crypto/tls that the Go TLS probes do not cover ({}): its "
          "TLS connections are counted as TCP (tls=\"true\"), without HTTP series",
          go.path, go.version, *why);
      continue;
    }
    const GoTlsProbes& probes = std::get<GoTlsProbes>(found);
    if (std::string err = probes_->AttachGoTls(go.path, go.id, probes); !err.empty()) {
      failed++;
      spdlog::warn("Go TLS probes not attached: {}", err);
      continue;
    }
    tls_libs_.MarkGoAttached(go);
    spdlog::info(
        "Go TLS probes attached to {} ({}; Read's entry and {} returns, Write's entry; "
        "*net.TCPConn type hash {:#010x})",
        go.path, go.version, probes.read.returns.size(), probes.tcp_conn_hash);
  }
  if (all) {
    if (size_t swept = probes_->SweepGoTlsCalls(); swept > 0) {
      spdlog::debug("deleted {} Go TLS calls in flight of processes that exited", swept);
    }
  }
  const uint64_t without_openssl = tls_libs_.without_openssl();
  const uint64_t go_tls = tls_libs_.go_tls_programs();
  const uint64_t go_files = tls_libs_.go_attached();
  const uint64_t unreadable = tls_libs_.unreadable();
  mail_.Post(
      [this, attached, detached, failed, without_openssl, go_tls, go_files, unreadable] {
        agg_.self().tls_libraries += attached;
        agg_.self().tls_libraries -= detached;
        agg_.self().tls_attach_errors += failed;
        agg_.self().tls_without_openssl = without_openssl;
        agg_.self().tls_go_not_covered = go_tls;
        agg_.self().tls_go_attached = go_files;
        agg_.self().tls_unreadable = unreadable;
      },
      stop);
}

void Agent::PollPods(const std::atomic<bool>& stop) {
  PodListResult r = pods_->Poll();
  std::optional<MetadataSourceStatus> kube;
  if (kube_ != nullptr) kube = kube_->Status();
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    pods_describe_ = pods_->Describe();
  }
  if (!r.error.empty()) {
    if (r.error != last_pods_error_) {
      spdlog::error("{} (keeping the last good pod list)", r.error);
      last_pods_error_ = r.error;
    }
  } else {
    last_pods_error_.clear();
  }
  mail_.Post([this, r = std::move(r), kube = std::move(kube)] { ApplyPods(r, kube); }, stop);
}

void Agent::ApplyPods(const PodListResult& r, const std::optional<MetadataSourceStatus>& kube) {
  if (kube) agg_.self().metadata_sources["kubernetes"] = *kube;
  if (!pods_source_name_.empty()) {
    MetadataSourceStatus& local = agg_.self().metadata_sources[pods_source_name_];
    local.up = r.error.empty();
    local.errors.try_emplace("read", 0);
  }
  if (!r.error.empty()) {
    agg_.self().metadata_sources[pods_source_name_].errors["read"]++;
    // The API's pods may still have changed while the local source is away.
    if (!r.changed) return;
  } else {
    agg_.self().metadata_last_success_unix = static_cast<double>(std::time(nullptr));
  }
  if (!r.changed) return;
  pipeline_.SetPods(r.pods);
  for (const std::string& change : r.changes) spdlog::info("{}", change);
  live_pods_.clear();
  // Compared with series labels, which hold values as the aggregator cut them.
  const size_t max_bytes = opts_.aggregator.max_label_value_bytes;
  for (const auto& pod : r.pods) {
    if (pod->name.empty()) continue;  // a Service address
    live_pods_.emplace(CleanLabelValue(pod->ns, max_bytes), CleanLabelValue(pod->name, max_bytes));
  }
  // With the API on, the list changes with the cluster: log it at debug.
  std::lock_guard<std::mutex> status(status_mu_);
  spdlog::log(kube_ != nullptr ? spdlog::level::debug : spdlog::level::info,
              "loaded {} pods and remote addresses from {}", r.pods.size(), pods_describe_);
  pods_loaded_ = true;
}

void Agent::PollLiveCounters(const std::atomic<bool>& stop) {
  std::vector<std::pair<uint32_t, std::string>> netns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    netns = pipeline_.pods().Netns();
  }
  netns.emplace_back(0, "");  // the agent's own (the host's) namespace
  auto counters = std::make_shared<std::vector<LiveCounters>>();
  for (const auto& [ino, path] : netns) {
    auto r = DumpEstablished(path);
    if (auto* err = std::get_if<std::string>(&r)) {
      spdlog::debug("live counters of {}: {}", path.empty() ? "host" : path, *err);
      continue;
    }
    auto& got = std::get<std::vector<LiveCounters>>(r);
    counters->insert(counters->end(), got.begin(), got.end());
  }
  // Applied later than read: harmless, as a live count is a lower bound of
  // the final one and never lowers what was reported (TcpPipeline::Report).
  const uint64_t read_ns = MonotonicNs();
  mail_.Post(
      [this, counters, read_ns] {
        for (const auto& c : *counters) pipeline_.OnLive(c, read_ns);
      },
      stop);
}

}  // namespace podtap
