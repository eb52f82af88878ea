// TCP event handling between the decoder and the aggregator.
#include "agent/conn/tcp_pipeline.h"

#include <algorithm>
#include <cmath>

#include "agent/metrics/metric_families.h"
#include "agent/metrics/pod_labels.h"

namespace podtap {

namespace {

// A TLS handshake record: content type 22, protocol version 3.x (SSL 3.0 to
// TLS 1.3, which still says 3.1-3.3 in the record layer).
bool LooksLikeTls(std::span<const uint8_t> b) {
  return b.size() >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04;
}

}  // namespace

TcpPipeline::TcpPipeline(Aggregator* agg, size_t max_connections,
                         std::set<std::string> allowed_pod_labels, bool capture_payload)
    : agg_(agg),
      conns_(max_connections),
      allowed_labels_(std::move(allowed_pod_labels)),
      capture_payload_(capture_payload) {}

void TcpPipeline::SetPods(const PodList& pods) {
  index_ = PodIndex(pods);
  label_cache_.clear();
  if (observer_ != nullptr) observer_->OnPodsChanged();
  // Service addresses (entries without a pod name) are not pods.
  agg_->self().pods_known = static_cast<uint64_t>(
      std::count_if(pods.begin(), pods.end(), [](const auto& p) { return !p->name.empty(); }));
}

TcpPipeline::ConnLabels TcpPipeline::LabelsFor(uint64_t cgroup_id, uint32_t netns_ino,
                                               Direction dir, const IpAddr& remote,
                                               uint16_t remote_port) {
  const PodMeta* local = index_.ForSocket(cgroup_id, netns_ino);
  const PodMeta* peer = dir == Direction::kOutbound ? index_.ForIp(remote) : nullptr;
  // The port is part of the key only when it names a Service port (bounded); the authority
  // string is built once per key, not per connection.
  const bool to_service =
      peer != nullptr && !peer->service.empty() &&
      std::any_of(peer->authority_ports.begin(), peer->authority_ports.end(),
                  [remote_port](const auto& p) { return p.first == remote_port; });
  LabelKey key{local, peer, to_service ? remote_port : 0};
  auto it = label_cache_.find(key);
  if (it == label_cache_.end()) {
    Labels labels = PodLabels(local, allowed_labels_);
    if (peer != nullptr) {
      Labels dst = DstPodLabels(*peer);
      labels.insert(labels.end(), dst.begin(), dst.end());
    }
    ConnLabels ids;
    ids.http = agg_->Intern(labels);
    ids.tcp = ids.http;
    if (to_service) {
      labels.emplace_back(kLabelAuthority, ServiceAuthority(peer, remote_port, cluster_domain_));
      ids.tcp = agg_->Intern(labels);
    }
    it = label_cache_.emplace(key, ids).first;
  }
  return it->second;
}

void TcpPipeline::CountOpen(Conn* c) {
  c->series = agg_->Transport(c->tcp_labels.id(), c->direction, c->tls);
  c->series->open_total++;
  c->series->open_now++;
}

void TcpPipeline::FlushPendingOpens(uint64_t now_ns) {
  while (!pending_opens_.empty() && pending_opens_.front().first + kOpenGraceNs <= now_ns) {
    Conn* c = conns_.Find(pending_opens_.front().second);
    if (c != nullptr && c->series == nullptr) CountOpen(c);
    pending_opens_.pop_front();
  }
}

void TcpPipeline::Report(Conn* c, uint64_t read, uint64_t written, uint64_t ts_ns) {
  // Counters never go back: a live read is a lower bound of the final one.
  uint64_t new_read = SubClamped(read, c->reported_read);
  uint64_t new_written = SubClamped(written, c->reported_written);
  c->series->read_bytes += new_read;
  c->series->write_bytes += new_written;
  c->reported_read += new_read;
  c->reported_written += new_written;
  if (observer_ != nullptr) {
    observer_->OnBytes(c->endpoints.id(), c->direction, new_read, new_written, ts_ns);
  }
}

void TcpPipeline::OnOpen(const TcpOpen& e) {
  Conn c;
  c.open_ns = e.open_ns;
  c.direction = e.direction;
  c.netns_ino = e.netns_ino;
  c.base_acked = e.base_acked;
  c.base_received = e.base_received;
  c.conn_id = e.conn_id;
  c.local = e.local;
  c.remote = e.remote;
  c.local_port = e.local_port;
  c.remote_port = e.remote_port;
  ConnLabels ids = LabelsFor(e.cgroup_id, e.netns_ino, e.direction, e.remote, e.remote_port);
  c.labels = std::move(ids.http);
  c.tcp_labels = std::move(ids.tcp);
  if (observer_ != nullptr) {
    // Both directions: the query service names the peer of inbound
    // connections too (the metrics' inbound series do not).
    c.endpoints =
        observer_->EndpointsOf(index_.ForSocket(e.cgroup_id, e.netns_ino), index_.ForIp(e.remote));
  }
  Conn* inserted = conns_.Insert(e.conn_id, std::move(c));
  if (inserted == nullptr) {
    agg_->self().conn_table_full++;
    return;
  }
  if (capture_payload_) {
    pending_opens_.emplace_back(e.open_ns, e.conn_id);
  } else {
    CountOpen(inserted);
  }
}

bool TcpPipeline::Adopt(const TcpOpen& e) {
  if (conns_.Find(e.conn_id) != nullptr) return false;
  OnOpen(e);
  Conn* c = conns_.Find(e.conn_id);
  if (c == nullptr) return false;  // table full, counted by OnOpen
  c->adopted = true;
  agg_->self().connections_adopted++;
  return true;
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
    agg_->self().opens_recovered++;
    synthesized.open_ns = e.open_ns;
    synthesized.direction = e.direction;
    synthesized.base_acked = e.base_acked;
    synthesized.base_received = e.base_received;
    ConnLabels ids = LabelsFor(e.cgroup_id, e.netns_ino, e.direction, e.remote, e.remote_port);
    synthesized.labels = std::move(ids.http);
    synthesized.tcp_labels = std::move(ids.tcp);
    if (observer_ != nullptr) {
      synthesized.endpoints = observer_->EndpointsOf(index_.ForSocket(e.cgroup_id, e.netns_ino),
                                                     index_.ForIp(e.remote));
    }
    c = &synthesized;
  }
  if (c->series == nullptr) CountOpen(c);
  Report(c, SubClamped(e.received_total, c->base_received),
         SubClamped(e.acked_total, c->base_acked), e.ts_ns);
  TransportSeries* s = c->series;
  CloseClass& cc = s->Close(e.failed ? Classification::kFailure : Classification::kSuccess, e.err);
  s->open_now--;
  cc.total++;
  if (!c->adopted) {
    cc.duration_ms.Observe(static_cast<double>(SubClamped(e.ts_ns, c->open_ns)) / 1e6);
  }
  if (e.failed) s->errors[static_cast<size_t>(e.error)]++;
  c->series = nullptr;  // counted for good; may expire from here on
  if (closing_order_.size() >= kMaxClosing) {
    FinishCloses(closing_order_.front().first + kCloseLingerNs);
  }
  c->conn_id = e.conn_id;
  closing_order_.emplace_back(e.ts_ns, e.conn_id);
  closing_.insert_or_assign(e.conn_id, std::move(*c));
  if (c != &synthesized) conns_.Erase(e.conn_id);
}

void TcpPipeline::FinishCloses(uint64_t now_ns) {
  while (!closing_order_.empty() && closing_order_.front().first + kCloseLingerNs <= now_ns) {
    auto [close_ns, id] = closing_order_.front();
    closing_order_.pop_front();
    auto it = closing_.find(id);
    if (it == closing_.end()) continue;
    Finish(it->second, close_ns);
    closing_.erase(it);
  }
}

void TcpPipeline::Finish(Conn& c, uint64_t close_ns) {
  if (c.http) c.http->OnClose(close_ns);
  if (c.tls_http) c.tls_http->OnClose(close_ns);
  if (c.verdict_written) verdicts_.push_back({VerdictOp::Kind::kForget, c.conn_id});
  if (c.tls_verdict_written) {
    verdicts_.push_back({VerdictOp::Kind::kForget, c.conn_id | kTlsVerdictBit});
  }
}

bool TcpPipeline::OnPayload(const PayloadEvent& e, std::span<const uint8_t> captured) {
  Conn* c = conns_.Find(e.conn_id);
  const Capture cap = e.segmented ? Capture::Segments(captured) : Capture(captured);
  if (c == nullptr) {
    // A syscall that completed after its socket closed: its bytes are in the close's counters;
    // its HTTP still counts while the connection's parsing lingers.
    auto it = closing_.find(e.conn_id);
    if (it == closing_.end()) return false;
    agg_->self().payload_events++;
    if (e.tls_plaintext || !it->second.tls) FeedHttp(&it->second, e, cap, e.tls_plaintext);
    return true;
  }
  agg_->self().payload_events++;
  c->records++;
  if (c->series == nullptr) {
    c->tls = e.tls_plaintext || LooksLikeTls(cap.At(0));
    CountOpen(c);
  }
  if (e.tls_plaintext) {
    FeedHttp(c, e, cap, true);
  } else if (c->tls) {
    // Ciphertext: nothing for the HTTP parser, and no reason to keep copying it out of the
    // kernel. (Records already in flight when the verdict was written still arrive.)
    if (!c->http_given_up) {
      c->http_given_up = true;
      c->verdict_written = true;
      verdicts_.push_back({VerdictOp::Kind::kStop, e.conn_id});
    }
  } else {
    FeedHttp(c, e, cap, false);
  }
  return true;
}

void TcpPipeline::FeedHttp(Conn* c, const PayloadEvent& e, const Capture& cap, bool tls) {
  std::unique_ptr<HttpConn>& http = tls ? c->tls_http : c->http;
  bool& given_up = tls ? c->tls_http_given_up : c->http_given_up;
  bool& verdict_written = tls ? c->tls_verdict_written : c->verdict_written;
  if (given_up) {  // records already in flight when the verdict was written
    if (c->shed) agg_->self().shed_records++;
    return;
  }
  if (!http) {
    http = std::make_unique<HttpConn>(&http_shared_, c->labels.id(), c->direction, tls);
    if (observer_ != nullptr) http->ReportTo(observer_, c->endpoints.id());
  }
  http->Feed(e.dir, cap, e.total_len, e.ts_ns);
  // The kernel wrote an HTTP/2 verdict (it follows the frames) on the preface; it is deleted with
  // the others at close.
  if (http->TakeHttp2Detected()) verdict_written = true;
  if (http->gave_up()) {
    agg_->self().given_up[http->protocol()]++;
    http.reset();
    given_up = true;
    verdict_written = true;
    verdicts_.push_back({VerdictOp::Kind::kStop, tls ? e.conn_id | kTlsVerdictBit : e.conn_id});
  }
}

size_t TcpPipeline::Shed(double share) {
  uint64_t total = 0;
  std::vector<std::pair<uint32_t, Conn*>> parsed;
  conns_.ForEachMutable([&](Conn& c) {
    total += c.records;
    if (c.records > 0 && (c.http || c.tls_http)) parsed.emplace_back(c.records, &c);
    c.records = 0;
  });
  if (share <= 0 || parsed.empty()) return 0;
  std::sort(parsed.begin(), parsed.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  const auto want = static_cast<uint64_t>(std::ceil(share * static_cast<double>(total)));
  uint64_t shed_records = 0;
  size_t shed = 0;
  for (const auto& [records, c] : parsed) {
    if (shed_records >= want) break;
    ShedOne(*c);
    shed_records += records;
    shed++;
  }
  return shed;
}

void TcpPipeline::ShedOne(Conn& c) {
  c.shed = true;
  agg_->self().shed_connections++;
  for (bool tls : {false, true}) {
    std::unique_ptr<HttpConn>& http = tls ? c.tls_http : c.http;
    if (!http) continue;
    http->Abandon();
    http.reset();
    (tls ? c.tls_http_given_up : c.http_given_up) = true;
    (tls ? c.tls_verdict_written : c.verdict_written) = true;
    verdicts_.push_back({VerdictOp::Kind::kStop, tls ? c.conn_id | kTlsVerdictBit : c.conn_id});
  }
}

void TcpPipeline::OnConnectFail(const TcpConnectFail& e) {
  auto ids = LabelsFor(e.cgroup_id, e.netns_ino, Direction::kOutbound, e.remote, e.remote_port);
  TransportSeries* s = agg_->Transport(ids.tcp.id(), Direction::kOutbound, false);
  s->errors[static_cast<size_t>(e.error)]++;
  // Linkerd's proxy counts closes of established connections only; podtap
  // also counts a failed connect as a close (no open, no duration), so that
  // tcp_close_total{errno!=""} shows refused and timed-out connects.
  s->Close(Classification::kFailure, e.err).total++;
}

void TcpPipeline::OnLive(const LiveCounters& l, uint64_t now_ns) {
  Conn* c = conns_.Find(l.conn_id);
  // Not ours yet (open event pending), untracked, or its open not counted:
  // the close will count every byte anyway.
  if (c == nullptr || c->series == nullptr) return;
  Report(c, SubClamped(l.bytes_received, c->base_received),
         SubClamped(l.bytes_acked, c->base_acked), now_ns);
}

}  // namespace podtap
