// Tests Accept / Accept-Encoding negotiation for /metrics.
#include "exporter/negotiation.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

TEST(NegotiationTest, PrometheusScrapeHeadersPickOpenMetrics) {
  // Prometheus 2.42's default scrape Accept header.
  EXPECT_EQ(NegotiateMetricsFormat("application/openmetrics-text;version=1.0.0,application/"
                                   "openmetrics-text;version=0.0.1;q=0.75,text/"
                                   "plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            MetricsFormat::kOpenMetrics);
}

TEST(NegotiationTest, TextUnlessOpenMetricsIsPreferred) {
  EXPECT_EQ(NegotiateMetricsFormat(""), MetricsFormat::kPrometheusText);
  EXPECT_EQ(NegotiateMetricsFormat("*/*"), MetricsFormat::kPrometheusText);
  EXPECT_EQ(NegotiateMetricsFormat("text/plain;version=0.0.4"), MetricsFormat::kPrometheusText);
  EXPECT_EQ(NegotiateMetricsFormat("application/openmetrics-text;q=0.2, text/plain"),
            MetricsFormat::kPrometheusText);
  EXPECT_EQ(NegotiateMetricsFormat("application/openmetrics-text; q=0"),
            MetricsFormat::kPrometheusText);
  EXPECT_EQ(NegotiateMetricsFormat("Application/OpenMetrics-Text"), MetricsFormat::kOpenMetrics);
}

TEST(NegotiationTest, Gzip) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate, GZIP;q=0.5"));
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("x-gzip-not"));
}

}  // namespace
}  // namespace podtap
