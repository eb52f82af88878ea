// Recent traffic for the query service: completed HTTP exchanges and payload
// bytes per (endpoint pair, direction), summed into small time buckets over
// the last minutes, with latencies in fine buckets (LatencyHistogram).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/conn/exchange_observer.h"
#include "agent/kernel/tcp_event.h"
#include "agent/metadata/pods.h"
#include "agent/metrics/interner.h"
#include "agent/query/latency_histogram.h"

namespace podtap {

// One end of a connection as the query service names it. `pod` empty: a host
// process (local end) or an address no known pod has (remote end).
struct Endpoint {
  std::string ns;
  std::string pod;
  std::string workload_kind;  // deployment, statefulset, daemonset, job, replicaset, ...
  std::string workload;
  // The pod's sockets are on this node (its network namespace or cgroup is
  // known), so its side of a connection is observed here too.
  bool on_node = false;
  bool host = false;  // a process outside any pod on this node (local ends only)
  auto operator<=>(const Endpoint&) const = default;
};

// Endpoint of a pod (null: none). A ReplicaSet named after its Deployment
// (pod-template-hash) is the Deployment.
Endpoint EndpointOf(const PodMeta* pod);

// Both ends of a connection, as an EndpointTable holds them: valid while the
// pair is held.
struct EndpointPair {
  const Endpoint& local;   // the pod whose socket this is
  const Endpoint& remote;  // the pod at the other end, when known
};

// Endpoint pairs interned to ids, once per connection. A pair is held by the
// refs Intern() returns (connections) and by the window buckets that count
// it, and freed with the last of them; the table must outlive its refs. Each
// end is interned apart and held by the pairs naming it: a pod's names are
// stored once, not once per peer it talks to.
class EndpointTable {
  using Ends = Interner<Endpoint>;
  // A pair as held: its two ends.
  struct EndRefs {
    Ends::Ref local, remote;
  };
  struct EndRefsLess {
    bool operator()(const EndRefs& a, const EndRefs& b) const {
      return std::pair(a.local.id(), a.remote.id()) < std::pair(b.local.id(), b.remote.id());
    }
  };

 public:
  using Pairs = Interner<EndRefs, EndRefsLess>;
  using Id = Pairs::Id;
  using Ref = Pairs::Ref;
  Ref Intern(const PodMeta* local, const PodMeta* remote);
  // Another holder of a pair held now.
  Ref Hold(Id id) { return pairs_.Hold(id); }
  // The same for holders that keep only the id (Interner::Acquire, Release).
  void Acquire(Id id) { pairs_.Acquire(id); }
  void Release(Id id) { pairs_.Release(id); }
  // Pod pointers are about to be replaced (a new pod list).
  void PodsChanged() { cache_.clear(); }
  EndpointPair Get(Id id) const {
    const EndRefs& e = pairs_.Get(id);
    return {ends_.Get(e.local.id()), ends_.Get(e.remote.id())};
  }
  EndpointPair Get(const Ref& ref) const { return Get(ref.id()); }
  // Pairs interned now.
  size_t size() const { return pairs_.size(); }

 private:
  struct PtrHash {
    size_t operator()(const std::pair<const PodMeta*, const PodMeta*>& p) const {
      return std::hash<const void*>()(p.first) * 31 + std::hash<const void*>()(p.second);
    }
  };
  Ends ends_;  // before the pairs, which hold its values
  Pairs pairs_;
  // Holds the pairs of the pod pointers seen since the last pod list.
  std::unordered_map<std::pair<const PodMeta*, const PodMeta*>, Ref, PtrHash> cache_;
};

class Window {
 public:
  // Two rings: 5 s buckets for the last two minutes, and 1 min buckets for
  // the last ten; every exchange is counted in one of each. A window up to
  // two minutes is summed from 5 s buckets (its start rounded down to one).
  // A longer one starts at the minute boundary nearest its start, and is
  // summed from 1 min buckets up to the boundary between one and two minutes
  // ago and from 5 s buckets after it (SpanNs() says how long it then is).
  // The memory is 37 buckets' worth instead of the 121 that 5 s buckets over
  // ten minutes would take.
  static constexpr uint64_t kBucketNs = 5'000'000'000;   // 5 s
  static constexpr size_t kBuckets = 25;                 // 2 min, and the one filling
  static constexpr uint64_t kCoarseNs = 60'000'000'000;  // 1 min
  static constexpr size_t kCoarseBuckets = 12;           // 11 min, and the one filling
  static constexpr uint64_t kMaxWindowNs = 10 * kCoarseNs;
  static constexpr uint64_t kFineWindowNs = kBucketNs * (kBuckets - 1);

  // The length of time a window of `window_ns` ending at `now_ns` sums: the
  // window itself up to kFineWindowNs, else from its rounded start.
  static uint64_t SpanNs(uint64_t now_ns, uint64_t window_ns);

  // `max_top_keys` bounds the distinct (pair, direction, method, authority,
  // path) kinds one bucket keeps for Top; past it they are counted as dropped.
  // Kept strings are cut to `max_value_bytes` and made valid UTF-8.
  // A bucket holds the endpoint pairs it counts (in `endpoints`, which must
  // outlive the window) until it is reused or aged out.
  explicit Window(EndpointTable* endpoints, size_t max_top_keys = 10000,
                  size_t max_value_bytes = 256);

  // The exchange's and the bytes' endpoint pair must be held by the caller.
  void OnExchange(const Exchange& x);
  // Payload bytes newly counted on a connection (live reads and the close).
  void OnBytes(EndpointTable::Id endpoints, Direction dir, uint64_t read, uint64_t written,
               uint64_t ts_ns);

  struct Traffic {
    uint64_t requests = 0;
    uint64_t successes = 0;
    LatencyHistogram latency;
    uint64_t read_bytes = 0;
    uint64_t write_bytes = 0;
  };
  using TrafficKey = std::pair<EndpointTable::Id, Direction>;
  // Sums over the buckets that overlap [now - window, now]: the window is
  // rounded up to whole buckets; windows past kMaxWindowNs are cut to it.
  std::map<TrafficKey, Traffic> Sum(uint64_t now_ns, uint64_t window_ns) const;

  struct TopKey {
    EndpointTable::Id endpoints;
    Direction direction;
    std::string method, authority, path;
    auto Tie() const { return std::tie(endpoints, direction, method, authority, path); }
    bool operator<(const TopKey& o) const { return Tie() < o.Tie(); }
  };
  struct TopCounts {
    uint64_t requests = 0;
    uint64_t failures = 0;
    LatencyHistogram latency;
    std::string route;  // RouteTable name for (method, path)
  };
  std::map<TopKey, TopCounts> SumTop(uint64_t now_ns, uint64_t window_ns) const;
  // Empties the buckets too old for any window ending at `now_ns` or later
  // (a bucket is otherwise emptied only when traffic reuses it), freeing the
  // endpoint pairs only they held. Sums are unchanged by it.
  void Age(uint64_t now_ns);

  // Exchanges left out of Top (bucket at max_top_keys), ever.
  uint64_t top_dropped() const { return top_dropped_; }
  // In the window given, as Sum.
  uint64_t TopDropped(uint64_t now_ns, uint64_t window_ns) const;

 private:
  // A view of a TopKey, so lookups of kinds already kept copy no string.
  struct TopKeyView {
    EndpointTable::Id endpoints;
    Direction direction;
    std::string_view method, authority, path;
  };
  // Buckets are hash tables: every exchange looks its kind up in two of
  // them, and ordered maps' string comparisons down the tree were a sixth of
  // the agent's time per exchange (the replay benchmark's profile). Sums are
  // ordered maps still.
  struct TopHash {
    using is_transparent = void;
    template <typename K>
    size_t operator()(const K& k) const {
      std::hash<std::string_view> h;
      size_t x =
          std::hash<uint64_t>()(uint64_t{k.endpoints} << 8 | static_cast<uint64_t>(k.direction));
      for (std::string_view s :
           {std::string_view(k.method), std::string_view(k.authority), std::string_view(k.path)}) {
        x = (x ^ h(s)) * 0x100000001b3ULL;
      }
      return x;
    }
  };
  struct TopEq {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return a.endpoints == b.endpoints && a.direction == b.direction && a.path == b.path &&
             a.method == b.method && a.authority == b.authority;
    }
  };
  struct TrafficHash {
    size_t operator()(const TrafficKey& k) const {
      return std::hash<uint64_t>()(uint64_t{k.first} << 8 | static_cast<uint64_t>(k.second));
    }
  };
  // A bucket's traffic of one key, and a holder of the key's endpoint pair
  // (which also names the bucket's Top kinds of the key).
  struct Cell {
    Traffic traffic;
    EndpointTable::Ref endpoints;
  };
  // A bucket's counts of one exchange's kind: its traffic cell and its Top
  // kind (null: Top had no room for it).
  struct TopCell;
  struct Counts {
    Traffic* traffic = nullptr;
    TopCell* top = nullptr;
  };
  // A Top kind of a bucket. In a 5 s bucket, `twin` is the same kind's
  // counts in the 1 min bucket of the same minute, valid while that bucket's
  // generation is `twin_gen`: an exchange of a kind already counted is
  // looked up once, not once in each ring.
  struct TopCell {
    TopCounts counts;
    Counts twin;
    uint64_t twin_gen = 0;
  };
  struct Bucket {
    uint64_t index = UINT64_MAX;  // ts / kBucketNs of what it holds
    uint64_t gen = 0;             // changes whenever the bucket is emptied
    std::unordered_map<TrafficKey, Cell, TrafficHash> traffic;
    std::unordered_map<TopKey, TopCell, TopHash, TopEq> top;
    uint64_t top_dropped = 0;
  };
  // The bucket of `ring` (of `width` ns buckets) for `ts_ns`, emptied first
  // when it held an older one; null for times older than the ring.
  Bucket* At(std::vector<Bucket>& ring, uint64_t width, uint64_t ts_ns);
  void Empty(Bucket* b, uint64_t index);
  // The bucket's traffic of a key, held from its first count.
  Traffic& TrafficOf(Bucket* b, EndpointTable::Id endpoints, Direction dir);
  // The bucket's counts of the exchange's kind, made when new.
  Counts CountsOf(Bucket* b, const Exchange& x);
  static void Count(const Counts& c, const Exchange& x);
  // Calls f(bucket) for every bucket overlapping [now - window, now].
  template <typename F>
  void ForWindow(uint64_t now_ns, uint64_t window_ns, F&& f) const;

  EndpointTable* endpoints_;
  size_t max_top_keys_;
  size_t max_value_bytes_;
  std::vector<Bucket> ring_;    // kBuckets of kBucketNs
  std::vector<Bucket> coarse_;  // kCoarseBuckets of kCoarseNs
  uint64_t top_dropped_ = 0;
  uint64_t generations_ = 0;  // buckets emptied, ever
};

}  // namespace podtap
