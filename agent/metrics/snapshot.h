// Plain value types the aggregator hands to the exposition writers: one
// consistent copy of every metric family, taken under the aggregator's lock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace podtap {

// Label name/value pairs in the order they are written.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

// The name every exposition format uses for the type.
inline const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";  // unreachable; GCC does not treat the switch as exhaustive
}

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
  double value = 0;         // counters and gauges
  HistogramData histogram;  // histograms only
};

// Built by NewFamily() from the family's declaration (metric_families.h).
struct MetricFamily {
  std::string name;  // full name as exposed, e.g. "tcp_open_total"
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<Sample> samples;
  // OpenMetrics unit ("ms", "bytes", "seconds"), empty when none applies;
  // when set, `name` (without a counter's "_total") ends with "_" + unit.
  std::string unit{};
};

struct Snapshot {
  std::vector<MetricFamily> families;
};

// Appends `in` with every byte sequence that is not valid UTF-8 replaced by
// U+FFFD, so a label value a client controls (an HTTP Host header) can never
// make an exposition unreadable. Overlong forms, surrogates and code points
// past U+10FFFF count as invalid, as in Go's utf8.ValidString, which is what
// Prometheus checks.
inline void AppendValidUtf8(std::string& out, std::string_view in) {
  size_t i = 0;
  while (i < in.size()) {
    const auto b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      out += static_cast<char>(b);
      i++;
      continue;
    }
    size_t len = 0;
    uint32_t min = 0;
    uint32_t cp = 0;
    if ((b & 0xE0) == 0xC0) {
      len = 2, min = 0x80, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, min = 0x800, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, cp = b & 0x07;
    }
    bool ok = len != 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; k++) {
      const auto c = static_cast<unsigned char>(in[i + k]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i++;
    }
  }
}

inline bool IsAscii(std::string_view in) {
  for (char c : in) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace podtap
