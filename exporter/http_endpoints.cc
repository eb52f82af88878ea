// The metrics server's answers, built on its worker threads: the metrics endpoints (a snapshot,
// filtered by match[], serialised in the negotiated format, gzip-ed when asked), /healthz and
// /readyz, and the server's own self metrics.
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <exception>
#include <string_view>
#include <vector>

#include "agent/metrics/metric_families.h"
#include "exporter/gzip.h"
#include "exporter/http_request.h"
#include "exporter/http_response.h"
#include "exporter/http_server.h"
#include "exporter/influx_format.h"
#include "exporter/json_format.h"
#include "exporter/negotiation.h"
#include "exporter/selector.h"
#include "exporter/text_format.h"

namespace podtap {
namespace {

// glibc's heap is the agent's, except in a sanitizer build, whose allocator owns it: there
// malloc_trim walks glibc arenas nothing set up (under ThreadSanitizer, two scrapes at once
// crashed in it), so it is left out.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kTrimHeap = false;
#else
constexpr bool kTrimHeap = true;
#endif

using Clock = std::chrono::steady_clock;

constexpr std::array<const char*, kHttpDropCount> kDropReasons = {
    "head_timeout", "evicted", "refused", "head_too_large", "bad_request", "write_timeout"};

constexpr std::array<std::string_view, kScrapeEndpointCount> kEndpoints = {
    "/metrics", "/metrics.json", "/metrics/influxdb"};

}  // namespace

void HttpServer::AppendSelfMetrics(Snapshot* snapshot) const {
  auto scrapes = NewFamily(self_metrics::kScrapesTotal);
  auto duration = NewFamily(self_metrics::kScrapeDurationSeconds);
  auto size = NewFamily(self_metrics::kScrapeSizeBytes);
  auto open = NewFamily(self_metrics::kHttpConnections);
  auto dropped = NewFamily(self_metrics::kHttpConnectionsDroppedTotal);
  {
    std::lock_guard lock(stats_mutex_);
    for (size_t i = 0; i < kScrapeEndpointCount; i++) {
      const Labels labels = {{kLabelEndpoint, std::string(kEndpoints[i])}};
      Sample s;
      s.labels = labels;
      s.value = static_cast<double>(stats_[i].count);
      scrapes.samples.push_back(s);
      s.value = stats_[i].last_seconds;
      duration.samples.push_back(s);
      s.value = static_cast<double>(stats_[i].last_bytes);
      size.samples.push_back(s);
    }
    Sample s;
    s.value = static_cast<double>(open_connections_);
    open.samples.push_back(s);
    for (size_t i = 0; i < kHttpDropCount; i++) {
      s.labels = {{kLabelReason, kDropReasons[i]}};
      s.value = static_cast<double>(drops_[i]);
      dropped.samples.push_back(s);
    }
  }
  snapshot->families.push_back(std::move(scrapes));
  snapshot->families.push_back(std::move(duration));
  snapshot->families.push_back(std::move(size));
  snapshot->families.push_back(std::move(open));
  snapshot->families.push_back(std::move(dropped));
}

std::string HttpServer::Answer(const HttpRequest& request) const {
  const std::string_view path = request.path;
  size_t endpoint = kScrapeEndpointCount;
  for (size_t i = 0; i < kScrapeEndpointCount; i++) {
    if (path == kEndpoints[i]) endpoint = i;
  }
  if (endpoint == kScrapeEndpointCount && path != "/healthz" && path != "/readyz") {
    return Respond(404, kPlainText, "not found\n");
  }
  if (request.method != "GET") return Respond(405, kPlainText, "method not allowed\n", "GET");
  // The providers belong to other modules; whatever they throw must not end
  // a worker thread (and with it the process).
  try {
    if (endpoint < kScrapeEndpointCount) return ServeMetrics(request, endpoint);
    if (path == "/healthz") return Respond(200, kPlainText, "ok\n");
    const std::string reason = readiness_();
    std::string detail = detail_ ? detail_() : "";
    if (!detail.empty()) detail += "\n";
    if (reason.empty()) return Respond(200, kPlainText, "ready\n" + detail);
    return Respond(503, kPlainText, reason + "\n" + detail);
  } catch (const std::exception& e) {
    spdlog::error("http: {} {} failed: {}", request.method, request.path, e.what());
    return Respond(500, kPlainText, std::string("internal error: ") + e.what() + "\n");
  }
}

std::string HttpServer::ServeMetrics(const HttpRequest& request, size_t endpoint) const {
  const auto start = Clock::now();
  std::vector<Selector> selectors;
  for (const std::string& value : QueryValues(request.query, "match[]")) {
    std::string error;
    auto sel = ParseSelector(value, &error);
    if (!sel) return Respond(400, kPlainText, "bad match[]: " + error + "\n");
    selectors.push_back(std::move(*sel));
  }
  std::string body;
  const char* content_type = kTextContentType;
  {
    Snapshot snapshot = snapshot_();
    if (!selectors.empty()) snapshot = SelectSeries(snapshot, selectors);
    switch (endpoint) {
      case 0:
        if (NegotiateMetricsFormat(request.Header("Accept")) == MetricsFormat::kOpenMetrics) {
          body = WriteOpenMetrics(snapshot);
          content_type = kOpenMetricsContentType;
        } else {
          body = WriteTextFormat(snapshot);
        }
        break;
      case 1: {
        const auto pretty = QueryValues(request.query, "pretty");
        body = WriteJson(snapshot, !pretty.empty() && !pretty.front().empty() &&
                                       pretty.front() != "0" && pretty.front() != "false");
        content_type = kJsonContentType;
        break;
      }
      default:
        body = WriteInfluxLineProtocol(snapshot,
                                       std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
        content_type = kInfluxContentType;
    }
  }
  // The snapshot (a copy of every series) is freed: hand its pages back to the kernel, or the
  // agent's RSS would stay at its high-water mark of two copies of the series between scrapes.
  if (kTrimHeap) malloc_trim(0);
  const bool gzipped = AcceptsGzip(request.Header("Accept-Encoding"));
  if (gzipped) body = Gzip(body);
  {
    std::lock_guard lock(stats_mutex_);
    stats_[endpoint].count++;
    stats_[endpoint].last_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    stats_[endpoint].last_bytes = body.size();
  }
  return Respond(200, content_type, body, nullptr, gzipped);
}

}  // namespace podtap
