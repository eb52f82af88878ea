// Registered metric sources, appended in order.
#include "agent/metrics/metric_sources.h"

#include <mutex>
#include <utility>

namespace podtap {

void MetricSources::Register(Source source) {
  std::unique_lock lock(mu_);
  sources_.push_back(std::move(source));
}

void MetricSources::AppendTo(Snapshot* out) const {
  std::shared_lock lock(mu_);
  for (const Source& source : sources_) source(out);
}

}  // namespace podtap
