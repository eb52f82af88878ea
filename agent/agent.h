// The agent's two threads. The event thread drains the kernel's ring buffers
// in batches and applies them to the pipeline under one short lock. The
// control thread does all that may block, on its own schedules: pod metadata
// (CRI calls, the Kubernetes API's cache), TLS library scans of /proc, live
// byte counters from sock_diag in every pod namespace; it posts the results to
// a mailbox the event thread applies between batches. Snapshots are served to
// the exporter from the same state under the same lock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/conn/tcp_pipeline.h"
#include "agent/kernel/event_decoder.h"
#include "agent/kernel/probes.h"
#include "agent/kernel/tls_libs.h"
#include "agent/mailbox.h"
#include "agent/metadata/kube_source.h"
#include "agent/metadata/pods.h"
#include "agent/metrics/aggregator.h"
#include "agent/metrics/metric_sources.h"
#include "agent/overload_guard.h"
#include "agent/query/query_recorder.h"
#include "agent/query/tap.h"

namespace podtap {

struct AgentOptions {
  ProbeOptions probes;
  std::string pods_file;  // empty: no pods, every socket is a host process
  // Set: pods from the container runtime over CRI at this socket ("": the
  // default sockets); excludes pods_file.
  std::optional<std::string> cri_socket;
  // Set: the Kubernetes API enriches and extends the pods above.
  std::optional<KubeOptions> kubernetes;
  RouteTable routes;
  std::set<std::string> pod_label_allowlist;
  // The cluster's DNS domain, in the TCP authority of connections to Services.
  std::string cluster_domain = "cluster.local";
  std::chrono::milliseconds diag_interval{5000};  // 0: no live byte updates
  size_t max_connections = 262144;
  AggregatorOptions aggregator;
  // Idle series whose pod is gone are removed after this (Aggregator::Expire).
  std::chrono::milliseconds series_retention{300000};
  TapOptions taps;  // the query service's live taps
  // TLS plaintext through uprobes on the libssl files the node's processes map.
  bool tls_probes = true;
  // How often every process's maps are read for them (new processes: every second).
  std::chrono::milliseconds tls_rescan_interval{30000};
  // The agent's CPU budget in cores (OverloadGuard); 0: none.
  double max_cpu = 0;
};

class Agent {
 public:
  explicit Agent(AgentOptions opts);

  // Attaches the probes; an operator-facing error on failure.
  std::string Start();
  // Runs the event loop on the calling thread and the control thread beside
  // it, until `stop` becomes true; both have ended when it returns.
  void Run(const std::atomic<bool>& stop);

  // Detaches the kernel programs (the first thing done on shutdown).
  void DetachProbes();

  // SIGHUP: routes for requests from now on (series counted so far stay);
  // nullopt when the new config was bad, so the routes stay. Counted in
  // podtap_config_reloads_total either way.
  void ReloadRoutes(std::optional<RouteTable> routes);

  // Every registered source's families: the aggregator's and the query service's (registered
  // here), then those registered through metric_sources().
  Snapshot Collect();
  // Where the components wired around the agent (the metrics server, the process metrics)
  // register their families.
  MetricSources& metric_sources() { return sources_; }
  // Empty when ready, otherwise why not.
  std::string NotReadyReason() const;
  // The metadata sources' state, for /readyz.
  std::string ReadyDetail() const;

  // For the query service: f(const QueryRecorder&, const TcpPipeline&),
  // called under the event loop's lock (keep it short).
  template <typename F>
  auto ReadQueryState(F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    return f(static_cast<const QueryRecorder&>(recorder_),
             static_cast<const TcpPipeline&>(pipeline_));
  }
  TapHub& taps() { return taps_; }

 private:
  void ApplyBatch();
  // Applies the control thread's updates (event thread, between batches).
  void ApplyMail();
  // The control thread's loop.
  void RunControl(const std::atomic<bool>& stop);
  // Control thread: reads the pod sources and posts the result.
  void PollPods(const std::atomic<bool>& stop);
  // Event thread, under mu_: the result of one PollPods.
  void ApplyPods(const PodListResult& r, const std::optional<MetadataSourceStatus>& kube);
  // Control thread: sock_diag in every pod namespace; posts the counters.
  void PollLiveCounters(const std::atomic<bool>& stop);
  // Tracks the connections already open when the agent started (sock_diag in
  // every pod namespace and the host's), so that open connections and bytes
  // after a restart are right.
  void AdoptOpenConnections();
  void ExpireSeries();
  // Event thread, each second: the CPU budget's check (OverloadGuard).
  void GuardCpu();
  // Control thread: attaches the TLS probes to libssl files that appeared
  // since the last call; posts the counts.
  void PollTlsLibraries(bool all, const std::atomic<bool>& stop);

  AgentOptions opts_;
  std::unique_ptr<PodSource> pods_;
  std::string pods_source_name_;   // the local source: "cri", "pods_file" or ""
  KubePodSource* kube_ = nullptr;  // pods_ when the Kubernetes API is on
  std::unique_ptr<TcpProbes> probes_;
  TlsLibraryFinder tls_libs_;
  // Whether the kernel's exec events stand in for the once-a-second walk of /proc (decided before
  // the probes load).
  bool tls_exec_events_ = false;
  // Filled by the ring buffer callback (decoded there, outside the lock);
  // captured payload bytes live in arena_.
  struct BatchItem {
    DecodedEvent event;
    bool retried = false;  // a payload already waited one batch for its open
  };
  std::vector<BatchItem> batch_;
  // The batch's time order, as (timestamp, index) pairs: sorting these is
  // cheaper than moving the events themselves.
  std::vector<std::pair<uint64_t, uint32_t>> order_;
  std::vector<uint8_t> arena_;
  std::vector<BatchItem> retry_;  // payloads whose connection was not known yet
  std::vector<uint8_t> retry_arena_;

  std::mutex mu_;  // guards agg_, recorder_ and pipeline_
  // The pipeline's connections hold label sets of agg_ and endpoint pairs of
  // recorder_: both are declared first, so they are destroyed after it.
  Aggregator agg_;
  TapHub taps_;
  QueryRecorder recorder_;
  TcpPipeline pipeline_;

  OverloadGuard guard_;
  // For /readyz: connections shed so far, and the CPU use (in millicores) that shed the last.
  std::atomic<uint64_t> shed_total_{0};
  std::atomic<uint64_t> shed_at_millicores_{0};

  // Collect()'s sources; the aggregator's and the query recorder's take mu_.
  MetricSources sources_;

  Mailbox mail_{8};
  std::thread control_;
  // The control thread sleeps until its next schedule is due; the event thread wakes it when the
  // agent stops.
  std::mutex control_mu_;
  std::condition_variable control_wake_;

  std::atomic<bool> attached_{false};
  std::atomic<bool> pods_loaded_{false};
  std::string last_pods_error_;  // control thread only
  // The pod sources' Describe(), refreshed by the control thread after each
  // poll, for /readyz: a source's Poll and Describe are called from the
  // control thread only (the CRI source picks its socket in Poll).
  mutable std::mutex status_mu_;
  std::string pods_describe_;
  // (namespace, name) of the pods that exist now; guarded by mu_.
  PodKeys live_pods_;
};

}  // namespace podtap
