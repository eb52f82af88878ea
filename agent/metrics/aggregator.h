// Metric state: transport series keyed by interned label sets, updated through
// stable pointers on the event path, and copied into a Snapshot for writers.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "agent/kernel/tcp_event.h"
#include "agent/metadata/pods.h"
#include "agent/metrics/interner.h"
#include "agent/metrics/snapshot.h"

namespace podtap {

// Linkerd's latency bucket bounds, in milliseconds (also used for durations).
inline constexpr std::array<double, 11> kLatencyBoundsMs = {1,   10,  50,   100,  200,  300,
                                                            400, 500, 1000, 5000, 10000};

class Histogram {
 public:
  // `v` in milliseconds; counted as whole milliseconds (truncated), in the
  // first bucket whose bound is >= it.
  void Observe(double v);
  HistogramData ToData() const;

 private:
  std::array<uint64_t, kLatencyBoundsMs.size() + 1> buckets_{};  // not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

enum class Classification : uint8_t { kSuccess = 0, kFailure = 1 };

// Closes of one (classification, errno) pair: tcp_close_total and
// tcp_connection_duration_ms of that pair.
struct CloseClass {
  Classification classification = Classification::kSuccess;
  int err = 0;  // 0: errno=""
  uint64_t total = 0;
  Histogram duration_ms;
};

// Everything counted for one (pod labels, direction) pair.
struct TransportSeries {
  uint64_t open_total = 0;
  int64_t open_now = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  // One entry per pair seen, in first-seen order: a clean close and the few
  // errnos a connection can end with (ErrnoName bounds them).
  std::vector<CloseClass> closes;
  std::array<uint64_t, kTcpErrorCount> errors{};

  CloseClass& Close(Classification c, int err);
};

// Everything counted for one (pod labels, direction, authority) triple.
struct HttpSeries {
  uint64_t requests = 0;
  // Sorted by key, as maps would be, but a series sees a few keys, and a map
  // node per key cost twice the entry.
  // (status code, gRPC status or -1, failure?) -> responses; status 0: none
  // seen (cut off before it).
  std::vector<std::pair<std::tuple<int, int, bool>, uint64_t>> responses;
  // Latency by status code only: Linkerd's response_latency_ms has neither
  // classification nor grpc_status_code.
  std::vector<std::pair<int, Histogram>> latency_ms;

  void CountResponse(int status, int grpc_status, bool failed, double latency_ms);
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
  uint64_t h2_capture_full = 0;       // kernel: HTTP/2 record out of room for a syscall's frames
  uint64_t h2_walk_lost = 0;          // kernel: HTTP/2 frame boundaries lost
  uint64_t h2_walk_out_of_order = 0;  // kernel: HTTP/2 syscall bytes not next in the stream
  uint64_t tls_unmapped = 0;          // kernel: TLS plaintext of an SSL object with no socket yet
  uint64_t tls_libraries = 0;         // OpenSSL API files the TLS probes are attached to
  uint64_t tls_attach_errors = 0;     // OpenSSL API files they could not be attached to
  uint64_t tls_without_openssl = 0;   // mapped executable files without the OpenSSL API, now
  uint64_t tls_go_not_covered = 0;    // of those, Go programs with crypto/tls, now
  uint64_t tls_go_attached = 0;       // Go programs the Go TLS probes are attached to
  uint64_t tls_unreadable = 0;        // tries to read a mapped file that could not be opened
  uint64_t payload_unmatched = 0;     // payload for a connection the agent does not track
  // (protocol, error name) -> count; protocol "http1" or "http2".
  std::map<std::pair<std::string, std::string>, uint64_t> parse_errors;
  std::map<std::string, uint64_t> given_up;  // connections no longer parsed, by protocol
  uint64_t http1_unanswered = 0;  // requests counted whose response the parser gave up on
  uint64_t http2_unanswered = 0;  // the same for HTTP/2 (a shed connection's open streams)
  // The CPU budget (OverloadGuard), in cores (0: no guard), the agent's use over its last
  // decision, connections whose HTTP capture was shed, and their socket data records that
  // were already on their way and were dropped unparsed.
  double cpu_budget_cores = 0;
  double cpu_used_cores = 0;
  uint64_t shed_connections = 0;
  uint64_t shed_records = 0;
  uint64_t closes_without_open = 0;  // sockets that predate the probes
  uint64_t connections_adopted = 0;  // open at start, found by sock_diag
  // Lifecycle events the ring buffer had no room for that still arrived:
  // opens rebuilt at close from the kernel's socket map, closes and failed
  // connects taken from the kernel's pending closes map; and closes lost
  // because that map was full too.
  uint64_t opens_recovered = 0;
  uint64_t closes_recovered = 0;
  uint64_t connect_fails_recovered = 0;
  uint64_t close_map_full = 0;
  uint64_t exec_map_full = 0;   // kernel: execs its map could not hold (a walk of /proc follows)
  uint64_t program_nested = 0;  // kernel: program runs skipped, the program already running
  uint64_t connections_tracked = 0;
  uint64_t connections_max = 0;  // the table's size
  uint64_t pods_known = 0;
  // By source: "pods_file" or "cri" (the local source), "kubernetes".
  std::map<std::string, MetadataSourceStatus> metadata_sources;
  double metadata_last_success_unix = 0;
  std::string probe_mode;      // the lifecycle hook: "tp_btf" or "tracepoint"
  std::string payload_probes;  // the socket data build, or "off"
  std::string syscall_hook;    // how it sees the syscalls: "sys_exit", "pairs" or "off"
  // Kernel features the loader probed, by name: available or missing.
  std::vector<std::pair<std::string, bool>> kernel_features;
  uint64_t config_reloads_ok = 0;  // SIGHUP re-reads of --config
  uint64_t config_reloads_error = 0;
};

// Bounds on what clients and pods can make the aggregator hold.
struct AggregatorOptions {
  // Most label sets per series group (see SeriesGroup); past it new ones are
  // counted in the group's overflow series (podtap_overflow="true").
  size_t max_series_per_family = 10000;
  // Label values (authority, route, pod labels) are cut to this many bytes,
  // at a UTF-8 character boundary, and invalid UTF-8 becomes U+FFFD.
  size_t max_label_value_bytes = 256;
};

// The keyed series maps. Every family of a group has exactly one series per
// key of the group (plus status/classification/le/error children), so a cap
// on keys is a cap on every family of the group:
//   kTcp:   tcp_open_total, tcp_close_total, tcp_open_connections,
//           tcp_read_bytes_total, tcp_write_bytes_total,
//           tcp_connection_duration_ms, {inbound,outbound}_tcp_errors_total
//   kHttp:  request_total, response_total, response_latency_ms
//   kRoute: route_request_total, route_response_total, route_response_latency_ms
enum class SeriesGroup : uint8_t { kTcp = 0, kHttp = 1, kRoute = 2 };
inline constexpr size_t kSeriesGroupCount = 3;
const char* SeriesGroupName(SeriesGroup g);  // "tcp", "http", "route"

// Cuts `value` to at most `max_bytes` without splitting a character and
// replaces invalid UTF-8 with U+FFFD.
std::string CleanLabelValue(std::string_view value, size_t max_bytes);

// (namespace, name) of pods, as series labels hold them (cut by CleanLabelValue).
using PodKeys = std::set<std::pair<std::string, std::string>>;
// For Aggregator::Expire(): whether every pod a label set names is in `live`:
// its own (namespace, pod), unless it is a host process's (both empty: the
// node's, which exists), and its destination (dst_namespace, dst_pod) when it
// names one. A series to a pod that is gone holds that pod's labels too.
bool LabelSetPodsExist(const Labels& labels, const PodKeys& live);

class Aggregator {
 public:
  using LabelSets = Interner<Labels>;
  using LabelSetId = LabelSets::Id;
  // A holder of a label set: the set stays interned, and its id valid, while
  // any holder of it lives (series, connections, the pipeline's label cache).
  using LabelRef = LabelSets::Ref;
  using Clock = std::chrono::steady_clock;

  explicit Aggregator(AggregatorOptions opts = {});

  // Label sets are interned once (per connection at most); the event path
  // then works on ids and series pointers. A set is held by the refs this
  // returns and by every series keyed by it, and freed with the last of them
  // (the series of a pod that is gone go in Expire()). The aggregator must
  // outlive the refs.
  LabelRef Intern(const Labels& labels);
  // Label sets interned now, the overflow series' one included.
  size_t LabelSetCount() const { return label_sets_.size(); }

  // `id` must be held (by the caller's LabelRef) during the call.
  // Pointer lifetimes (all calls under the caller's one lock):
  // - Transport(): valid while the series has open connections
  //   (open_now > 0: every connection that holds the pointer counted its open
  //   there and has not closed), and otherwise until the next Expire().
  // - Http(), Route(): valid until the next Expire(); callers use them at once.
  // Past the group's cap these return the group's overflow series, which is
  // never expired.
  // `tls`: the connection's first bytes were a TLS record.
  TransportSeries* Transport(LabelSetId id, Direction direction, bool tls);
  // `tls`: the exchange was read as TLS plaintext (the TLS library's probes).
  HttpSeries* Http(LabelSetId id, Direction direction, const std::string& authority,
                   bool tls = false);
  // Per route: `dst` is the request's authority, `route` a RouteTable name.
  HttpSeries* Route(LabelSetId id, Direction direction, const std::string& dst,
                    const std::string& route);

  // Removes series that are idle: no open connection, nothing counted for
  // `retention`, collected at least once since their last change (so their
  // last values were seen), and whose pod is gone (`pod_exists` false for
  // their label set, as LabelSetPodsExist says; it is asked about label sets
  // only, never called for overflow series). A removed series lets go of its
  // label set. Counters of a series that exists never go backwards;
  // a series that returns after expiry starts again from zero, which rate()
  // reads as a counter reset. Call every few seconds; returns how many
  // series were removed.
  size_t Expire(Clock::time_point now, Clock::duration retention,
                const std::function<bool(const Labels&)>& pod_exists);

  // Series (keys) held now in a group, overflow series included.
  size_t SeriesCount(SeriesGroup g) const;
  // Moves whenever Expire() removes a series: a series pointer kept from
  // Http() or Route() is valid while this has not moved.
  uint64_t generation() const { return generation_; }

  SelfStats& self() { return self_; }
  // Also marks every series as collected (see Expire()).
  Snapshot Collect() const;

 private:
  struct Key {
    LabelSetId id;
    Direction direction;
    bool operator<(const Key& o) const { return id != o.id ? id < o.id : direction < o.direction; }
  };
  // Idleness bookkeeping of one series. `activity` is the sum of the
  // series' monotonic counters, so it changes exactly when the series does.
  struct Idle {
    uint64_t activity_at_sweep = 0;
    uint64_t activity_at_collect = 0;
    Clock::time_point last_change{};
  };
  // In the map's node: a series' address is stable until it is erased.
  template <typename T>
  struct Entry {
    T series;
    mutable Idle idle;   // Collect() is const but records what it saw
    LabelRef label_set;  // holds the key's label set while the series lives; set at creation
  };
  template <typename Map>
  auto* FindOrCreate(Map& map, typename Map::key_type key, LabelSetId id,
                     const typename Map::key_type& overflow_key, SeriesGroup g);
  // Whether a new key of `g` may have a series of its own; counts the drop
  // when not.
  bool Admit(SeriesGroup g);
  std::string Clean(const std::string& value) const;

  AggregatorOptions opts_;
  uint64_t generation_ = 0;
  // Declared before everything that holds a LabelRef, so it is destroyed after them.
  LabelSets label_sets_;
  // Names the overflow series: {podtap_overflow="true"}; held for good.
  LabelRef overflow_;
  LabelSetId overflow_id_;
  std::map<std::pair<Key, bool>, Entry<TransportSeries>> transport_;
  std::map<std::tuple<Key, std::string, bool>, Entry<HttpSeries>> http_;
  std::map<std::tuple<Key, std::string, std::string>, Entry<HttpSeries>> routes_;
  std::array<size_t, kSeriesGroupCount> keys_{};  // regular (not overflow) keys
  std::array<uint64_t, kSeriesGroupCount> dropped_{};
  SelfStats self_;
};

}  // namespace podtap
