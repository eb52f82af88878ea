// A snapshot whose label values and help text are as hostile as a client
// (the Host header) or a pod label can make them, shared by the writer tests.
#pragma once

#include <string>

#include "agent/metrics/snapshot.h"

namespace podtap::testing {

// Quotes, backslashes, newlines, a carriage return, commas, spaces, equals
// signs, pipes, and bytes that are not UTF-8 (a lone continuation byte, a
// truncated sequence, 0xFF), next to valid multi-byte characters.
inline const std::string kHostileValue =
    "a\"b\\c\nd\re,f g=h|i#j\x80k\xE2\x82l\xFFm \xC3\xA9\xF0\x9F\x98\x80";

inline Snapshot HostileSnapshot() {
  Snapshot s;
  MetricFamily requests;
  requests.name = "request_total";
  requests.help = "Help with \\ backslash, \"quotes\" and\nnewline \xFF.";
  requests.type = MetricType::kCounter;
  Sample r;
  r.labels = {{"direction", "inbound"}, {"authority", kHostileValue}, {"empty", ""}};
  r.value = 3;
  requests.samples.push_back(r);
  s.families.push_back(requests);

  MetricFamily open;
  open.name = "tcp_open_connections";
  open.help = "Open connections.";
  open.type = MetricType::kGauge;
  Sample g;
  g.labels = {{"pod", "web-0"}};
  g.value = 2;
  open.samples.push_back(g);
  s.families.push_back(open);

  MetricFamily latency;
  latency.name = "response_latency_ms";
  latency.help = "Latency.";
  latency.type = MetricType::kHistogram;
  latency.unit = "ms";
  Sample h;
  h.labels = {{"authority", kHostileValue}};
  h.histogram = {{1, 10}, {2, 3, 4}, 31.5, 4};
  latency.samples.push_back(h);
  s.families.push_back(latency);
  return s;
}

// True when `s` is well-formed UTF-8.
inline bool IsValidUtf8(const std::string& s) {
  std::string copy;
  AppendValidUtf8(copy, s);
  return copy == s;
}

}  // namespace podtap::testing
