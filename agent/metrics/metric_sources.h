// The components that put metric families into a snapshot (the aggregator, the query service,
// the metrics server, the process metrics), each registered where it is wired, appended in
// registration order.
#pragma once

#include <functional>
#include <shared_mutex>
#include <vector>

#include "agent/metrics/snapshot.h"

namespace podtap {

class MetricSources {
 public:
  // Appends a component's families. Called on scrape threads, several at once, so it takes
  // the lock that guards what it reads; it must outlive its last AppendTo().
  using Source = std::function<void(Snapshot*)>;

  void Register(Source source);
  // Every source's families, in the order the sources were registered.
  void AppendTo(Snapshot* out) const;

 private:
  // Sources are registered while the agent is wired; scrapes read them concurrently.
  mutable std::shared_mutex mu_;
  std::vector<Source> sources_;
};

}  // namespace podtap
