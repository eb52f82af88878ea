// Snapshot to InfluxDB line protocol.
#include "exporter/influx_format.h"

#include <cmath>

#include "exporter/text_format.h"

namespace podtap {
namespace {

// Measurement names escape comma and space; tag keys, tag values and field
// keys also the equals sign.
void AppendEscaped(std::string& out, std::string_view text, bool equals) {
  std::string valid;
  if (!IsAscii(text)) {
    AppendValidUtf8(valid, text);
    text = valid;
  }
  for (char c : text) {
    if (c == ',' || c == ' ' || (equals && c == '=')) {
      out += '\\';
      out += c;
    } else if (c == '\n' || c == '\r') {
      out += "\\ ";
    } else if (c == '\\') {
      // Doubled so it cannot escape what follows it.
      out += "\\\\";
    } else {
      out += c;
    }
  }
}

void AppendField(std::string& out, std::string_view key, double value, bool* first) {
  if (!*first) out += ',';
  *first = false;
  AppendEscaped(out, key, true);
  out += '=';
  text_format::AppendNumber(out, value);
}

}  // namespace

std::string WriteInfluxLineProtocol(const Snapshot& snapshot, int64_t timestamp_ns) {
  std::string out;
  const std::string ts = " " + std::to_string(timestamp_ns) + "\n";
  for (const MetricFamily& family : snapshot.families) {
    for (const Sample& sample : family.samples) {
      const bool histogram = family.type == MetricType::kHistogram;
      if (!histogram && !std::isfinite(sample.value)) continue;
      if (histogram && !std::isfinite(sample.histogram.sum)) continue;
      AppendEscaped(out, family.name, false);
      for (const auto& [name, value] : sample.labels) {
        if (value.empty()) continue;
        out += ',';
        AppendEscaped(out, name, true);
        out += '=';
        AppendEscaped(out, value, true);
      }
      out += ' ';
      bool first = true;
      if (histogram) {
        const HistogramData& h = sample.histogram;
        AppendField(out, "count", static_cast<double>(h.count), &first);
        AppendField(out, "sum", h.sum, &first);
        std::string le;
        for (size_t i = 0; i < h.bounds.size() && i < h.cumulative_counts.size(); i++) {
          le.clear();
          text_format::AppendNumber(le, h.bounds[i]);
          AppendField(out, le, static_cast<double>(h.cumulative_counts[i]), &first);
        }
        AppendField(out, "+Inf", static_cast<double>(h.count), &first);
      } else {
        AppendField(out, family.type == MetricType::kCounter ? "counter" : "gauge", sample.value,
                    &first);
      }
      out += ts;
    }
  }
  return out;
}

}  // namespace podtap
