// Reads Accept and Accept-Encoding: comma-separated media ranges or codings,
// each with optional ";param=value" parts of which "q" is the quality.
#include "exporter/negotiation.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

namespace podtap {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// Calls f(token, quality) for each element of a header list.
template <typename F>
void ForEachElement(std::string_view header, F&& f) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view element = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    const size_t semi = element.find(';');
    const std::string_view token = Trim(element.substr(0, semi));
    double q = 1;
    std::string_view params =
        semi == std::string_view::npos ? std::string_view() : element.substr(semi + 1);
    while (!params.empty()) {
      const size_t next = params.find(';');
      const std::string_view param = Trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
      if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        q = std::strtod(std::string(param.substr(2)).c_str(), nullptr);
      }
    }
    if (!token.empty()) f(token, q);
  }
}

}  // namespace

MetricsFormat NegotiateMetricsFormat(std::string_view accept) {
  double open_metrics = 0;
  double text = 0;
  ForEachElement(accept, [&](std::string_view type, double q) {
    if (EqualsNoCase(type, "application/openmetrics-text")) {
      open_metrics = std::max(open_metrics, q);
    } else if (EqualsNoCase(type, "text/plain")) {
      text = std::max(text, q);
    }
  });
  return open_metrics > 0 && open_metrics >= text ? MetricsFormat::kOpenMetrics
                                                  : MetricsFormat::kPrometheusText;
}

bool AcceptsGzip(std::string_view accept_encoding) {
  bool gzip = false;
  ForEachElement(accept_encoding, [&](std::string_view coding, double q) {
    if (EqualsNoCase(coding, "gzip") || coding == "*") gzip = gzip || q > 0;
  });
  return gzip;
}

}  // namespace podtap
