// TCP event handling between the decoder and the aggregator.
#include "agent/tcp_pipeline.h"

#include "agent/pod_labels.h"

namespace podtap {
namespace {

uint64_t Minus(uint64_t total, uint64_t sub) { return total > sub ? total - sub : 0; }

}  // namespace

TcpPipeline::TcpPipeline(Aggregator* agg, size_t max_connections,
                         std::set<std::string> allowed_pod_labels)
    : agg_(agg), conns_(max_connections), allowed_labels_(std::move(allowed_pod_labels)) {}

void TcpPipeline::SetPods(const PodList& pods) {
  index_ = PodIndex(pods);
  label_cache_.clear();
  agg_->self().pods_known = pods.size();
}

TransportSeries* TcpPipeline::SeriesFor(uint64_t cgroup_id, uint32_t netns_ino, Direction dir,
                                        const IpAddr& remote) {
  const PodMeta* local = index_.ForSocket(cgroup_id, netns_ino);
  const PodMeta* peer = dir == Direction::kOutbound ? index_.ForIp(remote) : nullptr;
  auto key = std::make_pair(local, peer);
  auto it = label_cache_.find(key);
  if (it == label_cache_.end()) {
    Labels labels = PodLabels(local, allowed_labels_);
    if (peer != nullptr) {
      Labels dst = DstPodLabels(*peer);
      labels.insert(labels.end(), dst.begin(), dst.end());
    }
    it = label_cache_.emplace(key, agg_->Intern(labels)).first;
  }
  return agg_->Transport(it->second, dir);
}

void TcpPipeline::Report(Conn* c, uint64_t read, uint64_t written) {
  // Counters never go back: a live read is a lower bound of the final one.
  if (read > c->reported_read) {
    c->series->read_bytes += read - c->reported_read;
    c->reported_read = read;
  }
  if (written > c->reported_written) {
    c->series->write_bytes += written - c->reported_written;
    c->reported_written = written;
  }
}

void TcpPipeline::OnOpen(const TcpOpen& e) {
  Conn c;
  c.open_ns = e.open_ns;
  c.direction = e.direction;
  c.netns_ino = e.netns_ino;
  c.base_acked = e.base_acked;
  c.base_received = e.base_received;
  c.series = SeriesFor(e.cgroup_id, e.netns_ino, e.direction, e.remote);
  if (conns_.Insert(e.conn_id, c) == nullptr) {
    agg_->self().conn_table_full++;
    return;
  }
  c.series->open_total++;
  c.series->open_now++;
}

void TcpPipeline::OnClose(const TcpClose& e) {
  Conn* c = conns_.Find(e.conn_id);
  Conn synthesized;
  if (c == nullptr) {
    if (!e.kernel_saw_open) {
      // Opened before the probes were attached: its baseline is unknown.
      agg_->self().closes_without_open++;
      return;
    }
    // The open event was lost (ring buffer full) but the kernel remembered
    // the open: count the open now so opens, closes and bytes stay exact.
    synthesized.open_ns = e.open_ns;
    synthesized.direction = e.direction;
    synthesized.base_acked = e.base_acked;
    synthesized.base_received = e.base_received;
    synthesized.series = SeriesFor(e.cgroup_id, e.netns_ino, e.direction, e.remote);
    synthesized.series->open_total++;
    synthesized.series->open_now++;
    c = &synthesized;
  }
  Report(c, Minus(e.received_total, c->base_received), Minus(e.acked_total, c->base_acked));
  TransportSeries* s = c->series;
  auto cls = static_cast<size_t>(e.failed ? Classification::kFailure : Classification::kSuccess);
  s->open_now--;
  s->close_total[cls]++;
  s->duration_ms[cls].Observe(static_cast<double>(Minus(e.ts_ns, c->open_ns)) / 1e6);
  if (e.failed) s->errors[static_cast<size_t>(e.error)]++;
  if (c != &synthesized) conns_.Erase(e.conn_id);
}

void TcpPipeline::OnConnectFail(const TcpConnectFail& e) {
  SeriesFor(e.cgroup_id, e.netns_ino, Direction::kOutbound, e.remote)
      ->errors[static_cast<size_t>(e.error)]++;
}

void TcpPipeline::OnLive(const LiveCounters& l) {
  Conn* c = conns_.Find(l.conn_id);
  if (c == nullptr) return;  // not ours yet (open event pending) or untracked
  Report(c, Minus(l.bytes_received, c->base_received), Minus(l.bytes_acked, c->base_acked));
}

}  // namespace podtap
