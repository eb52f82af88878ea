// Writes a Snapshot in the Prometheus text exposition format, version 0.0.4,
// and in OpenMetrics 1.0 text.
#pragma once

#include <string>
#include <string_view>

#include "agent/metrics/snapshot.h"

namespace podtap {

inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr const char* kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

// The whole snapshot as one exposition: HELP and TYPE for every family (even
// one without samples, so dashboards can tell "no traffic yet" from "not
// exported"), then its samples in snapshot order.
std::string WriteTextFormat(const Snapshot& snapshot);

// The same in OpenMetrics 1.0: a counter family is named without "_total"
// in HELP/TYPE and its samples with it, `# UNIT` appears where the family
// has a unit, and the exposition ends with "# EOF".
std::string WriteOpenMetrics(const Snapshot& snapshot);

// The pieces every line is built from, exposed so they can be tested on their
// own; each appends to `out` so a scrape builds one string without temporaries.
namespace text_format {

// Integral values below 2^53 print as exact integers ("42", not "42.0" or
// "4.2e+01"); anything else in the shortest form that reads back to the same
// double. Infinities and NaN use the spellings Prometheus parses: +Inf, -Inf, NaN.
void AppendNumber(std::string& out, double value);

// All of these also replace invalid UTF-8 with U+FFFD: both parsers reject
// an exposition that is not UTF-8.
// HELP text: backslash and newline escaped.
void AppendEscapedHelp(std::string& out, std::string_view help);

// OpenMetrics HELP text: backslash, double quote and newline escaped.
void AppendEscapedOpenMetricsHelp(std::string& out, std::string_view help);

// Label value: backslash, double quote and newline escaped.
void AppendEscapedLabelValue(std::string& out, std::string_view value);

}  // namespace text_format
}  // namespace podtap
