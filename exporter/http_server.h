// Serves the metrics endpoints (/metrics in Prometheus text or OpenMetrics,
// /metrics.json, /metrics/influxdb; all gzip-able and filterable by match[]),
// /healthz and /readyz over HTTP for Prometheus, scripts and the kubelet,
// with bounded connections, request heads and deadlines (docs/security.md).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "agent/metrics/snapshot.h"

namespace podtap {

inline constexpr size_t kScrapeEndpointCount = 3;

// Why the server closed a connection without answering its request, or
// refused it: podtap_http_connections_dropped_total{reason}.
enum class HttpDrop : uint8_t {
  kHeadTimeout,   // the request head was not complete within head_timeout
  kEvicted,       // still sending its head when the table was full and a new client came
  kRefused,       // the table was full of requests being answered
  kHeadTooLarge,  // head over max_head_bytes or max_header_lines: answered 431
  kBadRequest,    // not an HTTP/1.x request head: answered 400
  kWriteTimeout,  // the client did not read the whole response within write_timeout
};
inline constexpr size_t kHttpDropCount = 6;

struct HttpRequest;  // a request head the server read (http_request.h)

struct HttpLimits {
  // Connections open at once, in every state; past it, the one that has
  // been sending its head the longest is closed for the newcomer, or, when
  // every slot holds a request being answered, the newcomer is.
  size_t max_connections = 128;
  // From accept to the end of the request head, however the bytes trickle.
  std::chrono::milliseconds head_timeout{5000};
  // From the first byte of the response to its last.
  std::chrono::milliseconds write_timeout{10000};
  size_t max_head_bytes = 16384;
  size_t max_header_lines = 64;
  // Threads that build responses (snapshot, serialisation, gzip).
  int workers = 2;
};

// The metrics server: one thread multiplexes every connection with epoll,
// reading request heads and writing responses without blocking, so a client
// that sends or reads slowly holds a connection slot, never a thread, and
// only until its deadline; complete requests go to a few worker threads,
// so a scrape never runs on the agent's event thread and a slow scrape
// never stalls event processing. HTTP/1.x, one request per connection.
class HttpServer {
 public:
  // Both are called on the worker threads, possibly several at once, so
  // they must be thread-safe.
  using SnapshotProvider = std::function<Snapshot()>;
  // Empty when ready, otherwise the reason, which /readyz returns with a 503.
  using ReadinessCheck = std::function<std::string()>;
  // Lines /readyz adds after "ready" or the reason (e.g. metadata sources' state).
  using ReadinessDetail = std::function<std::string()>;

  // `listen_address` in the agent's flag form: ":4191" (all interfaces, IPv4
  // and IPv6 on one socket, or IPv4 only where the kernel has no IPv6),
  // "127.0.0.1:4191" or "[::1]:4191"; port 0 picks a free port.
  HttpServer(std::string listen_address, SnapshotProvider snapshot, ReadinessCheck readiness,
             ReadinessDetail detail = nullptr, HttpLimits limits = {});
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving. Empty on success, otherwise a message an
  // operator can act on, e.g. "cannot listen on :4191: address already in use".
  std::string Start();
  // Why `listen_address` cannot be served (the reason Start() would give
  // before binding), or empty when it is well-formed; binds nothing.
  static std::string CheckListenAddress(const std::string& listen_address);
  // Closes the listening socket and every connection, and returns once the
  // threads have ended (a worker first finishes the response it builds).
  // Safe to call when not started.
  void Stop();
  // The bound port (useful with port 0); 0 when not started.
  int port() const { return port_; }
  // podtap_scrape* and podtap_http_connections*: the snapshot provider's MetricSources
  // registers it with the other components' families. Thread-safe.
  void AppendSelfMetrics(Snapshot* snapshot) const;

 private:
  struct Runtime;

  // The front thread: accepts, reads heads, writes answers, enforces limits.
  void FrontLoop();
  void Accept();
  void OnReadable(int fd);
  void OnWritable(int fd);
  void StartWriting(int fd, std::string response);
  void CloseConnection(int fd);
  void Drop(HttpDrop reason);
  void ExpireDeadlines();
  int NextTimeoutMs() const;
  void WorkerLoop();
  std::string Answer(const HttpRequest& request) const;
  std::string ServeMetrics(const HttpRequest& request, size_t endpoint) const;

  const std::string listen_address_;
  const SnapshotProvider snapshot_;
  const ReadinessCheck readiness_;
  const ReadinessDetail detail_;
  const HttpLimits limits_;
  std::unique_ptr<Runtime> runtime_;
  int port_ = 0;

  struct ScrapeStats {
    uint64_t count = 0;
    double last_seconds = 0;
    uint64_t last_bytes = 0;
  };
  mutable std::mutex stats_mutex_;
  mutable std::array<ScrapeStats, kScrapeEndpointCount>
      stats_{};                                   // /metrics, /metrics.json, /metrics/influxdb
  std::array<uint64_t, kHttpDropCount> drops_{};  // by HttpDrop, under stats_mutex_
  size_t open_connections_ = 0;                   // under stats_mutex_
};

}  // namespace podtap
