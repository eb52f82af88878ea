// Writes a Snapshot in the Prometheus text exposition format, version 0.0.4.
#include "exporter/text_format.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace podtap {
namespace text_format {

void AppendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  // Longest shortest-round-trip double is 24 characters ("-2.2250738585072014e-308").
  char buf[32];
  std::to_chars_result result;
  // Below 2^53 every integral double is an exact int64, so counters read as
  // whole numbers; -0.0 prints as "0", which Prometheus treats the same.
  if (std::fabs(value) < 0x1p53 && value == std::trunc(value)) {
    result = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));
  } else {
    result = std::to_chars(buf, buf + sizeof buf, value);
  }
  out.append(buf, result.ptr);
}

void AppendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

}  // namespace text_format

namespace {

const char* TypeName(MetricType type) {
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

// `le` is empty except for histogram buckets, where it goes last, after the
// sample's own labels, as client libraries write it.
void AppendLabels(std::string& out, const Labels& labels, std::string_view le) {
  if (labels.empty() && le.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    text_format::AppendEscapedLabelValue(out, value);
    out += '"';
  }
  if (!le.empty()) {
    if (!first) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void AppendLine(std::string& out, std::string_view name, std::string_view suffix,
                const Labels& labels, std::string_view le, double value) {
  out += name;
  out += suffix;
  AppendLabels(out, labels, le);
  out += ' ';
  text_format::AppendNumber(out, value);
  out += '\n';
}

void AppendHistogram(std::string& out, std::string_view name, const Sample& sample) {
  const HistogramData& h = sample.histogram;
  std::string le;
  // A producer that sent fewer counts than bounds has a bug; writing fewer
  // buckets keeps the scrape valid instead of reading past the vector.
  for (size_t i = 0; i < h.bounds.size() && i < h.cumulative_counts.size(); ++i) {
    le.clear();
    text_format::AppendNumber(le, h.bounds[i]);
    AppendLine(out, name, "_bucket", sample.labels, le,
               static_cast<double>(h.cumulative_counts[i]));
  }
  // The +Inf bucket is written from `count` so the two Prometheus requires to
  // be equal can never disagree in the output.
  AppendLine(out, name, "_bucket", sample.labels, "+Inf", static_cast<double>(h.count));
  AppendLine(out, name, "_sum", sample.labels, {}, h.sum);
  AppendLine(out, name, "_count", sample.labels, {}, static_cast<double>(h.count));
}

}  // namespace

std::string WriteTextFormat(const Snapshot& snapshot) {
  std::string out;
  for (const MetricFamily& family : snapshot.families) {
    out += "# HELP ";
    out += family.name;
    out += ' ';
    text_format::AppendEscapedHelp(out, family.help);
    out += "\n# TYPE ";
    out += family.name;
    out += ' ';
    out += TypeName(family.type);
    out += '\n';
    for (const Sample& sample : family.samples) {
      if (family.type == MetricType::kHistogram) {
        AppendHistogram(out, family.name, sample);
      } else {
        AppendLine(out, family.name, {}, sample.labels, {}, sample.value);
      }
    }
  }
  return out;
}

}  // namespace podtap
