// Serves the metrics endpoints (/metrics in Prometheus text or OpenMetrics,
// /metrics.json, /metrics/influxdb; all gzip-able and filterable by match[]),
// /healthz and /readyz over HTTP for Prometheus, scripts and the kubelet.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "agent/snapshot.h"

struct mg_context;
struct mg_connection;

namespace podtap {

inline constexpr size_t kScrapeEndpointCount = 3;

// civetweb, because it is packaged in Debian (libcivetweb-dev), it is what
// prometheus-cpp's exposer runs on, its C API is small, and it serves requests
// on worker threads of its own, so a scrape never runs on the agent's event
// thread and a slow scraper never stalls event processing.
class HttpServer {
 public:
  // Both are called on civetweb's worker threads, possibly several at once,
  // so they must be thread-safe.
  using SnapshotProvider = std::function<Snapshot()>;
  // Empty when ready, otherwise the reason, which /readyz returns with a 503.
  using ReadinessCheck = std::function<std::string()>;
  // Lines /readyz adds after "ready" or the reason (e.g. metadata sources' state).
  using ReadinessDetail = std::function<std::string()>;

  // `listen_address` in the agent's flag form: ":4191" (all interfaces),
  // "127.0.0.1:4191" or "[::1]:4191"; port 0 picks a free port. ":PORT" is
  // dual-stack only if civetweb was built with IPv6; Debian 12's 1.15 is not,
  // so there it means IPv4 only and an IPv6 address fails Start() saying so.
  HttpServer(std::string listen_address, SnapshotProvider snapshot, ReadinessCheck readiness,
             ReadinessDetail detail = nullptr);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving. Empty on success, otherwise a message an
  // operator can act on, e.g. "cannot listen on :4191: address already in use".
  std::string Start();
  // Why `listen_address` cannot be served (the reason Start() would give
  // before binding), or empty when it is well-formed; binds nothing.
  static std::string CheckListenAddress(const std::string& listen_address);
  // Waits for requests in flight to finish. Safe to call when not started.
  // Wakes civetweb's master thread with a connection to itself, so that this
  // takes milliseconds instead of up to two seconds (civetweb issue #1163).
  void Stop();
  // The bound port (useful with port 0); 0 when not started.
  int port() const { return port_; }

 private:
  static int HandleRequest(mg_connection* conn, void* self);
  int ServeMetrics(mg_connection* conn, size_t endpoint) const;
  // podtap_scrape* of the metrics endpoints and the process_* metrics.
  void AppendSelfMetrics(Snapshot* snapshot) const;
  static int LogMessage(const mg_connection* conn, const char* message);

  const std::string listen_address_;
  const SnapshotProvider snapshot_;
  const ReadinessCheck readiness_;
  const ReadinessDetail detail_;
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::string local_host_;  // where Stop() connects to wake civetweb
  bool local_v6_ = false;

  struct ScrapeStats {
    uint64_t count = 0;
    double last_seconds = 0;
    uint64_t last_bytes = 0;
  };
  mutable std::mutex stats_mutex_;
  mutable std::array<ScrapeStats, kScrapeEndpointCount>
      stats_{};  // /metrics, /metrics.json, /metrics/influxdb

  // civetweb reports why it could not start only through its log callback;
  // during Start() the first such message is kept for the returned error.
  std::mutex log_mutex_;
  bool starting_ = false;
  std::string start_error_;
};

}  // namespace podtap
