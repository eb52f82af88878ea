// Metric state: transport series keyed by interned label sets, updated through
// stable pointers on the event path, and copied into a Snapshot for writers.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "agent/snapshot.h"
#include "agent/tcp_event.h"

namespace podtap {

// Linkerd's latency bucket bounds, in milliseconds (also used for durations).
inline constexpr std::array<double, 11> kLatencyBoundsMs = {1,   10,  50,   100,  200,  300,
                                                            400, 500, 1000, 5000, 10000};

class Histogram {
 public:
  void Observe(double v);
  HistogramData ToData() const;

 private:
  std::array<uint64_t, kLatencyBoundsMs.size() + 1> buckets_{};  // not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

enum class Classification : uint8_t { kSuccess = 0, kFailure = 1 };

// Everything counted for one (pod labels, direction) pair.
struct TransportSeries {
  uint64_t open_total = 0;
  int64_t open_now = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  std::array<uint64_t, 2> close_total{};  // by Classification
  std::array<Histogram, 2> duration_ms;   // by Classification
  std::array<uint64_t, kTcpErrorCount> errors{};
};

// Responses of one (labels, direction, authority, status, classification).
struct HttpResponseSeries {
  uint64_t count = 0;
  Histogram latency_ms;
};

// Everything counted for one (pod labels, direction, authority) triple.
struct HttpSeries {
  uint64_t requests = 0;
  // (status code, failure?) -> responses; status 0 = none seen (cut off).
  std::map<std::pair<int, bool>, HttpResponseSeries> responses;
};

// The agent's own health, set by the event loop.
struct SelfStats {
  uint64_t events_lost_ringbuf = 0;  // kernel: ring buffer full
  uint64_t kernel_sockmap_full = 0;  // kernel: open not remembered
  uint64_t decode_errors = 0;
  uint64_t conn_table_full = 0;       // opens not tracked: table at its cap
  uint64_t payload_events = 0;        // payload records applied
  uint64_t payload_lost_ringbuf = 0;  // kernel: payload ring buffer full
  uint64_t payload_lost_args = 0;     // kernel: syscall argument map full
  uint64_t payload_unmatched = 0;     // payload for a connection the agent does not track
  std::map<std::string, uint64_t> http1_errors;  // by error name
  uint64_t http1_given_up = 0;                   // connections no longer parsed
  uint64_t closes_without_open = 0;   // sockets that predate the probes
  uint64_t connections_tracked = 0;
  uint64_t pods_known = 0;
  uint64_t metadata_errors = 0;
  double metadata_last_success_unix = 0;
  std::string probe_mode;
};

class Aggregator {
 public:
  using LabelSetId = uint32_t;

  // Label sets are interned once (per connection at most); the event path
  // then works on ids and series pointers.
  LabelSetId Intern(const Labels& labels);
  // Stable for the aggregator's lifetime.
  // `tls`: the connection's first bytes were a TLS record.
  TransportSeries* Transport(LabelSetId id, Direction direction, bool tls);
  // Stable for the aggregator's lifetime.
  HttpSeries* Http(LabelSetId id, Direction direction, const std::string& authority);
  // Per route: `dst` is the request's authority, `route` a RouteTable name.
  HttpSeries* Route(LabelSetId id, Direction direction, const std::string& dst,
                    const std::string& route);

  SelfStats& self() { return self_; }
  Snapshot Collect() const;

 private:
  struct Key {
    LabelSetId id;
    Direction direction;
    bool operator<(const Key& o) const {
      return id != o.id ? id < o.id : direction < o.direction;
    }
  };
  std::map<Labels, LabelSetId> ids_;
  std::vector<Labels> label_sets_;
  std::map<std::pair<Key, bool>, std::unique_ptr<TransportSeries>> transport_;
  std::map<std::pair<Key, std::string>, std::unique_ptr<HttpSeries>> http_;
  std::map<std::tuple<Key, std::string, std::string>, std::unique_ptr<HttpSeries>> routes_;
  SelfStats self_;
};

}  // namespace podtap
