// Writes a Snapshot in InfluxDB line protocol (/metrics/influxdb).
#pragma once

#include <cstdint>
#include <string>

#include "agent/metrics/snapshot.h"

namespace podtap {

inline constexpr const char* kInfluxContentType = "text/plain; charset=utf-8";

// One line per sample, as Telegraf's Prometheus input writes them: the
// family name is the measurement, labels are tags (empty values left out:
// line protocol has no empty tag), and the fields are
//   counter:   counter=<v>      gauge: gauge=<v>
//   histogram: count=<n>,sum=<v>,<le>=<cumulative n>,...,+Inf=<n>
// followed by `timestamp_ns`. Commas, spaces and equals signs in names and
// tags are backslash-escaped and backslashes doubled, so none can end a
// section early; newlines, which line protocol cannot carry, become escaped
// spaces; invalid UTF-8 becomes U+FFFD. Samples whose value is NaN or
// infinite (not representable as a field) are left out.
std::string WriteInfluxLineProtocol(const Snapshot& snapshot, int64_t timestamp_ns);

}  // namespace podtap
