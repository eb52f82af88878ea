// Writes a Snapshot in the Prometheus text exposition format, version 0.0.4,
// and in OpenMetrics 1.0 text.
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

namespace {

// Escapes backslash and newline, and double quote when `quote`; the input is
// valid UTF-8 (the callers below make sure).
void AppendEscaped(std::string& out, std::string_view text, bool quote) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += quote ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

void AppendEscapedUtf8(std::string& out, std::string_view text, bool quote) {
  // Nearly every value is ASCII, which is valid UTF-8 as it is.
  if (IsAscii(text)) {
    AppendEscaped(out, text, quote);
    return;
  }
  std::string valid;
  AppendValidUtf8(valid, text);
  AppendEscaped(out, valid, quote);
}

}  // namespace

void AppendEscapedHelp(std::string& out, std::string_view help) {
  AppendEscapedUtf8(out, help, false);
}

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  AppendEscapedUtf8(out, value, true);
}

void AppendEscapedOpenMetricsHelp(std::string& out, std::string_view help) {
  AppendEscapedUtf8(out, help, true);
}

}  // namespace text_format

namespace {

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

namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void AppendFamily(std::string& out, const MetricFamily& family, bool open_metrics) {
  std::string_view name = family.name;
  std::string_view sample_suffix;
  if (open_metrics && family.type == MetricType::kCounter) {
    // OpenMetrics names the counter family without "_total" and every
    // sample with it.
    if (EndsWith(name, "_total")) name.remove_suffix(6);
    sample_suffix = "_total";
  }
  out += "# HELP ";
  out += name;
  out += ' ';
  if (open_metrics) {
    text_format::AppendEscapedOpenMetricsHelp(out, family.help);
  } else {
    text_format::AppendEscapedHelp(out, family.help);
  }
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += MetricTypeName(family.type);
  out += '\n';
  // A unit that is not the name's suffix would make the parser reject the
  // whole exposition, so such a unit is left out rather than written.
  if (open_metrics && !family.unit.empty() && EndsWith(name, "_" + family.unit)) {
    out += "# UNIT ";
    out += name;
    out += ' ';
    out += family.unit;
    out += '\n';
  }
  for (const Sample& sample : family.samples) {
    if (family.type == MetricType::kHistogram) {
      AppendHistogram(out, name, sample);
    } else {
      AppendLine(out, name, sample_suffix, sample.labels, {}, sample.value);
    }
  }
}

}  // namespace

std::string WriteTextFormat(const Snapshot& snapshot) {
  std::string out;
  for (const MetricFamily& family : snapshot.families) AppendFamily(out, family, false);
  return out;
}

std::string WriteOpenMetrics(const Snapshot& snapshot) {
  std::string out;
  for (const MetricFamily& family : snapshot.families) AppendFamily(out, family, true);
  out += "# EOF\n";
  return out;
}

}  // namespace podtap
