// Time-bucketed traffic for Stat, Top and Edges.
#include "agent/query/window.h"

#include "agent/metrics/aggregator.h"
#include "agent/metrics/pod_labels.h"

namespace podtap {

Endpoint EndpointOf(const PodMeta* pod) {
  Endpoint e;
  if (pod == nullptr) return e;
  e.ns = pod->ns;
  e.pod = pod->name;
  e.on_node = pod->netns_ino != 0 || pod->cgroup_id != 0;
  // The owner as the dst_* labels name it, most specific workload first.
  static const std::array<std::pair<const char*, const char*>, 6> kOwners = {{
      {"dst_deployment", "deployment"},
      {"dst_statefulset", "statefulset"},
      {"dst_daemonset", "daemonset"},
      {"dst_k8s_job", "job"},
      {"dst_replicationcontroller", "replicationcontroller"},
      {"dst_replicaset", "replicaset"},
  }};
  Labels labels = DstPodLabels(*pod);
  for (const auto& [label, kind] : kOwners) {
    for (const auto& [name, value] : labels) {
      if (name == label) {
        e.workload_kind = kind;
        e.workload = value;
        return e;
      }
    }
  }
  return e;
}

EndpointTable::Ref EndpointTable::Intern(const PodMeta* local, const PodMeta* remote) {
  auto key = std::make_pair(local, remote);
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  Endpoint local_end = EndpointOf(local);
  local_end.host = local == nullptr;
  EndRefs ends{ends_.Intern(std::move(local_end)), ends_.Intern(EndpointOf(remote))};
  return cache_.emplace(key, pairs_.Intern(std::move(ends))).first->second;
}

Window::Window(EndpointTable* endpoints, size_t max_top_keys, size_t max_value_bytes)
    : endpoints_(endpoints),
      max_top_keys_(max_top_keys),
      max_value_bytes_(max_value_bytes),
      ring_(kBuckets),
      coarse_(kCoarseBuckets) {}

Window::Bucket* Window::At(std::vector<Bucket>& ring, uint64_t width, uint64_t ts_ns) {
  uint64_t index = ts_ns / width;
  Bucket& b = ring[index % ring.size()];
  if (b.index == index) return &b;
  if (b.index != UINT64_MAX && b.index > index) return nullptr;
  Empty(&b, index);
  return &b;
}

void Window::Empty(Bucket* b, uint64_t index) {
  b->index = index;
  b->gen = ++generations_;
  b->top.clear();
  b->traffic.clear();  // after Top: its cells hold the pairs Top's kinds name
  b->top_dropped = 0;
}

void Window::Age(uint64_t now_ns) {
  for (auto [ring, width] : {std::pair{&ring_, kBucketNs}, std::pair{&coarse_, kCoarseNs}}) {
    for (Bucket& b : *ring) {
      // Older than the ring: ForWindow never reads it, At() would reuse it.
      if (b.index != UINT64_MAX && b.index + ring->size() <= now_ns / width) {
        Empty(&b, UINT64_MAX);
      }
    }
  }
}

Window::Traffic& Window::TrafficOf(Bucket* b, EndpointTable::Id endpoints, Direction dir) {
  auto [it, inserted] = b->traffic.try_emplace({endpoints, dir});
  if (inserted) it->second.endpoints = endpoints_->Hold(endpoints);
  return it->second.traffic;
}

void Window::OnExchange(const Exchange& x) {
  Counts fine;
  if (Bucket* b = At(ring_, kBucketNs, x.ts_ns); b != nullptr) {
    fine = CountsOf(b, x);
    if (fine.top == nullptr) top_dropped_++;
    Count(fine, x);
  }
  Bucket* coarse = At(coarse_, kCoarseNs, x.ts_ns);
  if (coarse == nullptr) return;
  // A 5 s bucket lies within one minute: its kind's twin is in `coarse`
  // unless that bucket was emptied since.
  TopCell* cell = fine.top;
  if (cell != nullptr && cell->twin.top != nullptr && cell->twin_gen == coarse->gen) {
    Count(cell->twin, x);
    return;
  }
  Counts c = CountsOf(coarse, x);
  if (cell != nullptr && c.top != nullptr) {
    cell->twin = c;
    cell->twin_gen = coarse->gen;
  }
  Count(c, x);
}

Window::Counts Window::CountsOf(Bucket* b, const Exchange& x) {
  Counts c;
  c.traffic = &TrafficOf(b, x.endpoints, x.direction);
  TopKeyView view{x.endpoints, x.direction, x.method, x.authority, x.path};
  auto it = b->top.find(view);
  if (it == b->top.end()) {
    // Kept as the service can send them: cut and valid UTF-8 (a long or
    // invalid path may then match a kind already kept).
    TopKey key{x.endpoints, x.direction, CleanLabelValue(x.method, max_value_bytes_),
               CleanLabelValue(x.authority, max_value_bytes_),
               CleanLabelValue(x.path, max_value_bytes_)};
    it = b->top.find(key);
    if (it == b->top.end()) {
      if (b->top.size() >= max_top_keys_) {
        b->top_dropped++;
        return c;
      }
      it = b->top.emplace(std::move(key), TopCell{}).first;
      it->second.counts.route = x.route;
    }
  }
  c.top = &it->second;
  return c;
}

void Window::Count(const Counts& c, const Exchange& x) {
  c.traffic->requests++;
  if (!x.failed) c.traffic->successes++;
  c.traffic->latency.ObserveMs(x.latency_ms);
  if (c.top == nullptr) return;
  TopCounts& top = c.top->counts;
  top.requests++;
  if (x.failed) top.failures++;
  top.latency.ObserveMs(x.latency_ms);
}

void Window::OnBytes(EndpointTable::Id endpoints, Direction dir, uint64_t read, uint64_t written,
                     uint64_t ts_ns) {
  if (read == 0 && written == 0) return;
  for (Bucket* b : {At(ring_, kBucketNs, ts_ns), At(coarse_, kCoarseNs, ts_ns)}) {
    if (b == nullptr) continue;
    Traffic& t = TrafficOf(b, endpoints, dir);
    t.read_bytes += read;
    t.write_bytes += written;
  }
}

template <typename F>
void Window::ForWindow(uint64_t now_ns, uint64_t window_ns, F&& f) const {
  if (window_ns > kMaxWindowNs) window_ns = kMaxWindowNs;
  uint64_t start = SubClamped(now_ns, window_ns);
  if (window_ns > kFineWindowNs) {
    // 1 min buckets from the boundary nearest the start to the one between
    // one and two minutes ago; 5 s buckets from there.
    uint64_t split = SubClamped(now_ns / kCoarseNs * kCoarseNs, kCoarseNs);
    for (uint64_t i = (start + kCoarseNs / 2) / kCoarseNs; i < split / kCoarseNs; i++) {
      const Bucket& b = coarse_[i % kCoarseBuckets];
      if (b.index == i) f(b);
    }
    start = split;
  }
  for (uint64_t i = start / kBucketNs; i <= now_ns / kBucketNs; i++) {
    const Bucket& b = ring_[i % kBuckets];
    if (b.index == i) f(b);
  }
}

uint64_t Window::SpanNs(uint64_t now_ns, uint64_t window_ns) {
  if (window_ns > kMaxWindowNs) window_ns = kMaxWindowNs;
  if (window_ns <= kFineWindowNs) return window_ns;
  uint64_t start = SubClamped(now_ns, window_ns);
  return now_ns - (start + kCoarseNs / 2) / kCoarseNs * kCoarseNs;
}

std::map<Window::TrafficKey, Window::Traffic> Window::Sum(uint64_t now_ns,
                                                          uint64_t window_ns) const {
  std::map<TrafficKey, Traffic> out;
  ForWindow(now_ns, window_ns, [&](const Bucket& b) {
    for (const auto& [key, cell] : b.traffic) {
      const Traffic& t = cell.traffic;
      Traffic& o = out[key];
      o.requests += t.requests;
      o.successes += t.successes;
      o.latency.Merge(t.latency);
      o.read_bytes += t.read_bytes;
      o.write_bytes += t.write_bytes;
    }
  });
  return out;
}

std::map<Window::TopKey, Window::TopCounts> Window::SumTop(uint64_t now_ns,
                                                           uint64_t window_ns) const {
  std::map<TopKey, TopCounts> out;
  ForWindow(now_ns, window_ns, [&](const Bucket& b) {
    for (const auto& [key, cell] : b.top) {
      const TopCounts& c = cell.counts;
      TopCounts& o = out[key];
      o.requests += c.requests;
      o.failures += c.failures;
      o.latency.Merge(c.latency);
      o.route = c.route;
    }
  });
  return out;
}

uint64_t Window::TopDropped(uint64_t now_ns, uint64_t window_ns) const {
  uint64_t n = 0;
  ForWindow(now_ns, window_ns, [&](const Bucket& b) { n += b.top_dropped; });
  return n;
}

}  // namespace podtap
