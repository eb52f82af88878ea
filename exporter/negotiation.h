// HTTP content negotiation for /metrics: which exposition format the Accept
// header prefers, and whether Accept-Encoding allows gzip.
#pragma once

#include <string_view>

namespace podtap {

enum class MetricsFormat { kPrometheusText, kOpenMetrics };

// OpenMetrics when the client lists application/openmetrics-text with a
// quality above zero and at least that of text/plain (Prometheus 2.x sends
// "application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5");
// the text format otherwise, including when there is no Accept header.
MetricsFormat NegotiateMetricsFormat(std::string_view accept);

// True when Accept-Encoding names gzip (or *) with a quality above zero.
bool AcceptsGzip(std::string_view accept_encoding);

}  // namespace podtap
