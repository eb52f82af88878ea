// Applies decoded TCP events to the connection table and the aggregator:
// attribution to pods, payload byte accounting (live and at close), opens,
// closes and failures.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <unordered_map>

#include "agent/aggregator.h"
#include "agent/conn_table.h"
#include "agent/pods.h"
#include "agent/tcp_event.h"

namespace podtap {

class TcpPipeline {
 public:
  TcpPipeline(Aggregator* agg, size_t max_connections, std::set<std::string> allowed_pod_labels);

  void SetPods(const PodList& pods);
  const PodIndex& pods() const { return index_; }

  void OnOpen(const TcpOpen& e);
  void OnClose(const TcpClose& e);
  void OnConnectFail(const TcpConnectFail& e);
  // Counters of an ESTABLISHED socket (so no FIN is in them yet).
  void OnLive(const LiveCounters& c);

  size_t tracked() const { return conns_.size(); }

 private:
  TransportSeries* SeriesFor(uint64_t cgroup_id, uint32_t netns_ino, Direction dir,
                             const IpAddr& remote);
  void Report(Conn* c, uint64_t read, uint64_t written);

  Aggregator* agg_;
  ConnTable conns_;
  std::set<std::string> allowed_labels_;
  PodIndex index_;
  // (local pod, remote pod) -> interned label set; cleared when pods change.
  struct PairHash {
    size_t operator()(const std::pair<const PodMeta*, const PodMeta*>& p) const {
      return std::hash<const void*>()(p.first) * 31 + std::hash<const void*>()(p.second);
    }
  };
  std::unordered_map<std::pair<const PodMeta*, const PodMeta*>, Aggregator::LabelSetId, PairHash>
      label_cache_;
};

}  // namespace podtap
