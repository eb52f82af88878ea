// Event loop of podtap-agent.
#include "agent/agent.h"

#include <spdlog/spdlog.h>

#include <ctime>

#include "agent/sock_diag.h"

namespace podtap {

Agent::Agent(AgentOptions opts)
    : opts_(std::move(opts)),
      pipeline_(&agg_, opts_.max_connections, opts_.pod_label_allowlist) {
  if (!opts_.pods_file.empty()) {
    pods_ = std::make_unique<PodsFileSource>(opts_.pods_file);
  } else {
    pods_loaded_ = true;
  }
}

std::string Agent::Start() {
  if (pods_) {
    spdlog::info("pod metadata from {}", pods_->Describe());
    PollPods();
  } else {
    spdlog::info("no pod metadata source: every connection counts as a host process");
  }
  auto r = TcpProbes::Attach(opts_.probes, [this](const void* data, size_t size) {
    batch_.push_back(DecodeTcpEvent(data, size));
  });
  if (auto* err = std::get_if<std::string>(&r)) return *err;
  probes_ = std::move(std::get<std::unique_ptr<TcpProbes>>(r));
  {
    std::lock_guard<std::mutex> lock(mu_);
    agg_.self().probe_mode = probes_->mode();
  }
  attached_ = true;
  return "";
}

void Agent::Run(const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  auto next_pods = Clock::now() + std::chrono::seconds(1);
  auto next_diag = Clock::now() + opts_.diag_interval;
  while (!stop.load()) {
    int n = probes_->Poll(100);
    if (n < 0 && n != -EINTR) {
      spdlog::error("ring buffer poll failed: {}", std::strerror(-n));
    }
    ApplyBatch();
    auto now = Clock::now();
    if (pods_ && now >= next_pods) {
      PollPods();
      next_pods = now + std::chrono::seconds(1);
    }
    if (opts_.diag_interval.count() > 0 && now >= next_diag) {
      PollLiveCounters();
      next_diag = now + opts_.diag_interval;
    }
  }
}

void Agent::ApplyBatch() {
  TcpProbes::Drops drops = probes_->ReadDrops();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& ev : batch_) {
    if (const auto* o = std::get_if<TcpOpen>(&ev)) {
      pipeline_.OnOpen(*o);
    } else if (const auto* c = std::get_if<TcpClose>(&ev)) {
      pipeline_.OnClose(*c);
    } else if (const auto* f = std::get_if<TcpConnectFail>(&ev)) {
      pipeline_.OnConnectFail(*f);
    } else {
      agg_.self().decode_errors++;
      spdlog::debug("dropped an event: {}", std::get<DecodeError>(ev).message);
    }
  }
  batch_.clear();
  agg_.self().events_lost_ringbuf = drops.ringbuf_full;
  agg_.self().kernel_sockmap_full = drops.sockmap_full;
  agg_.self().connections_tracked = pipeline_.tracked();
}

void Agent::PollPods() {
  PodListResult r = pods_->Poll();
  std::lock_guard<std::mutex> lock(mu_);
  if (!r.error.empty()) {
    agg_.self().metadata_errors++;
    if (r.error != last_pods_error_) {
      spdlog::error("{} (keeping the last good pod list)", r.error);
      last_pods_error_ = r.error;
    }
    return;
  }
  last_pods_error_.clear();
  agg_.self().metadata_last_success_unix = static_cast<double>(std::time(nullptr));
  if (!r.changed) return;
  pipeline_.SetPods(r.pods);
  spdlog::info("loaded {} pods from {}", r.pods.size(), pods_->Describe());
  pods_loaded_ = true;
}

void Agent::PollLiveCounters() {
  std::vector<std::pair<uint32_t, std::string>> netns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    netns = pipeline_.pods().Netns();
  }
  netns.emplace_back(0, "");  // the agent's own (the host's) namespace
  for (const auto& [ino, path] : netns) {
    auto r = DumpEstablished(path);
    if (auto* err = std::get_if<std::string>(&r)) {
      spdlog::debug("live counters of {}: {}", path.empty() ? "host" : path, *err);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : std::get<std::vector<LiveCounters>>(r)) pipeline_.OnLive(c);
  }
}

void Agent::DetachProbes() {
  probes_.reset();
  attached_ = false;
  spdlog::info("kernel programs detached");
}

Snapshot Agent::Collect() {
  std::lock_guard<std::mutex> lock(mu_);
  return agg_.Collect();
}

std::string Agent::NotReadyReason() const {
  if (!attached_) return "kernel probes not attached yet";
  if (!pods_loaded_) return "pod metadata not loaded yet: " + pods_->Describe();
  return "";
}

}  // namespace podtap
