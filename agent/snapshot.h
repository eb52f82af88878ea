// Plain value types the aggregator hands to the exposition writers: one
// consistent copy of every metric family, taken under the aggregator's lock.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace podtap {

// Label name/value pairs in the order they are written.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

struct HistogramData {
  // Upper bounds, ascending, without +Inf; counts[i] is the number of
  // observations <= bounds[i] (cumulative), counts.back() the +Inf bucket.
  std::vector<double> bounds;
  std::vector<uint64_t> cumulative_counts;  // bounds.size() + 1 entries
  double sum = 0;
  uint64_t count = 0;
};

struct Sample {
  Labels labels;
  double value = 0;      // counters and gauges
  HistogramData histogram;  // histograms only
};

struct MetricFamily {
  std::string name;  // full name as exposed, e.g. "tcp_open_total"
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<Sample> samples;
};

struct Snapshot {
  std::vector<MetricFamily> families;
};

}  // namespace podtap
