// Exchanges to the window and to live taps.
#include "agent/query/query_recorder.h"

#include "agent/metrics/aggregator.h"
#include "agent/metrics/metric_families.h"

namespace podtap {

void QueryRecorder::OnExchange(const Exchange& x) {
  window_.OnExchange(x);
  if (!taps_->active()) return;
  const EndpointPair& pair = endpoints_.Get(x.endpoints);
  TapRecord r;
  r.ts_ns = x.ts_ns;
  r.direction = x.direction;
  r.local = pair.local;
  r.remote = pair.remote;
  // Cut and valid UTF-8, as gRPC can send them. Parsers already cut the
  // query string; cut again so no parser change can ever leak one to a tap.
  r.method = CleanLabelValue(x.method, kMaxTapValueBytes);
  r.authority = CleanLabelValue(x.authority, kMaxTapValueBytes);
  r.path = CleanLabelValue(x.path.substr(0, x.path.find_first_of("?#")), kMaxTapValueBytes);
  r.status = x.status;
  r.grpc_status = x.grpc_status;
  r.latency_ms = x.latency_ms;
  r.failed = x.failed;
  taps_->Publish(r, x.ts_ns);
}

namespace {

void Add(MetricFamily* f, Labels labels, uint64_t value) {
  Sample s;
  s.labels = std::move(labels);
  s.value = static_cast<double>(value);
  f->samples.push_back(std::move(s));
}

}  // namespace

void AppendQueryMetrics(const QueryRecorder& recorder, const TapHub& taps, Snapshot* out) {
  MetricFamily dropped = NewFamily(self_metrics::kTapEventsDroppedTotal);
  Add(&dropped, {{kLabelReason, "rate_limited"}}, taps.dropped_rate_limited());
  Add(&dropped, {{kLabelReason, "queue_full"}}, taps.dropped_queue_full());
  MetricFamily streams = NewFamily(self_metrics::kTapStreams);
  Add(&streams, {}, taps.streams());
  MetricFamily top = NewFamily(self_metrics::kQueryTopDroppedTotal);
  Add(&top, {}, recorder.window().top_dropped());
  MetricFamily pairs = NewFamily(self_metrics::kQueryEndpointPairs);
  Add(&pairs, {}, recorder.endpoints().size());
  out->families.push_back(std::move(dropped));
  out->families.push_back(std::move(streams));
  out->families.push_back(std::move(top));
  out->families.push_back(std::move(pairs));
}

}  // namespace podtap
