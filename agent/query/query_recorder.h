// What the event loop records for the query service, next to the aggregator:
// who each connection's two ends are, completed exchanges and bytes into the
// time window, and exchanges to live taps. Called under the event loop's lock.
#pragma once

#include <cstdint>

#include "agent/conn/exchange_observer.h"
#include "agent/metrics/snapshot.h"
#include "agent/query/tap.h"
#include "agent/query/window.h"

namespace podtap {

class QueryRecorder final : public ExchangeObserver {
 public:
  // Tapped method, authority and path are cut to this many bytes.
  static constexpr size_t kMaxTapValueBytes = 1024;

  explicit QueryRecorder(TapHub* taps, size_t max_top_keys = 10000)
      : window_(&endpoints_, max_top_keys), taps_(taps) {}

  // The pair is held by the connection (and then by the window buckets that count it).
  EndpointsRef EndpointsOf(const PodMeta* local, const PodMeta* remote) override {
    return EndpointsRef(this, endpoints_.Intern(local, remote).id());
  }
  void OnPodsChanged() override { endpoints_.PodsChanged(); }

  void OnExchange(const Exchange& x) override;
  void OnBytes(EndpointsRef::Id endpoints, Direction dir, uint64_t read, uint64_t written,
               uint64_t ts_ns) override {
    window_.OnBytes(endpoints, dir, read, written, ts_ns);
  }
  // Ages the window (Window::Age), freeing the endpoint pairs of connections
  // closed before its oldest bucket. `now_ns` on the kernel's monotonic clock.
  void Age(uint64_t now_ns) { window_.Age(now_ns); }

  const EndpointTable& endpoints() const { return endpoints_; }
  const Window& window() const { return window_; }

 private:
  void HoldEndpoints(EndpointsRef::Id id) override { endpoints_.Acquire(id); }
  void ReleaseEndpoints(EndpointsRef::Id id) override { endpoints_.Release(id); }

  EndpointTable endpoints_;
  Window window_;
  TapHub* taps_;
};

// The query service's self metrics: podtap_tap_events_dropped_total{reason},
// podtap_tap_streams, podtap_query_top_dropped_total, podtap_query_endpoint_pairs.
void AppendQueryMetrics(const QueryRecorder& recorder, const TapHub& taps, Snapshot* out);

}  // namespace podtap
