// What the event loop records for the query service, next to the aggregator:
// who each connection's two ends are, completed exchanges and bytes into the
// time window, and exchanges to live taps. Called under the event loop's lock.
#pragma once

#include <cstdint>

#include "agent/snapshot.h"
#include "agent/tap.h"
#include "agent/window.h"

namespace podtap {

class QueryRecorder {
 public:
  // Tapped method, authority and path are cut to this many bytes.
  static constexpr size_t kMaxTapValueBytes = 1024;

  explicit QueryRecorder(TapHub* taps, size_t max_top_keys = 10000)
      : window_(&endpoints_, max_top_keys), taps_(taps) {}

  // Held by the connection (and then by the window buckets that count it).
  EndpointTable::Ref Endpoints(const PodMeta* local, const PodMeta* remote) {
    return endpoints_.Intern(local, remote);
  }
  void PodsChanged() { endpoints_.PodsChanged(); }

  void OnExchange(const Exchange& x);
  void OnBytes(EndpointTable::Id endpoints, Direction dir, uint64_t read, uint64_t written,
               uint64_t ts_ns) {
    window_.OnBytes(endpoints, dir, read, written, ts_ns);
  }
  // Ages the window (Window::Age), freeing the endpoint pairs of connections
  // closed before its oldest bucket. `now_ns` on the kernel's monotonic clock.
  void Age(uint64_t now_ns) { window_.Age(now_ns); }

  const EndpointTable& endpoints() const { return endpoints_; }
  const Window& window() const { return window_; }

 private:
  EndpointTable endpoints_;
  Window window_;
  TapHub* taps_;
};

// The query service's self metrics: podtap_tap_events_dropped_total{reason},
// podtap_tap_streams, podtap_query_top_dropped_total, podtap_query_endpoint_pairs.
void AppendQueryMetrics(const QueryRecorder& recorder, const TapHub& taps, Snapshot* out);

}  // namespace podtap
