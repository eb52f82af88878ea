// HTTP(S) to the Kubernetes API through libcurl: whole responses for lists,
// line-by-line streams for watches, TLS and bearer-token or client-certificate
// authentication from a KubeConfig. One client per thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/metadata/kube_config.h"

namespace podtap {

struct HttpResult {
  long status = 0;         // HTTP status; 0 when no response arrived
  std::string body;        // Get: the body; Stream: the first bytes of a non-2xx body
  std::string error;       // transport failure, or why the stream was ended
  bool too_large = false;  // the body or a line exceeded its bound
};

// What the list/watch logic needs from HTTP; tests substitute their own.
class KubeTransport {
 public:
  virtual ~KubeTransport() = default;
  // GET `path` (with query); a body over `max_body` bytes is an error.
  virtual HttpResult Get(const std::string& path, size_t max_body) = 0;
  // GET a stream: `on_open` once a 2xx response's headers are in, then
  // every complete line (without its '\n') to `on_line`, which returns false
  // to end the stream. A line over `max_line` bytes ends it with too_large.
  // Returns when the server ends the stream, on error, or when `on_line`
  // said stop.
  virtual HttpResult Stream(const std::string& path, size_t max_line,
                            const std::function<void()>& on_open,
                            const std::function<bool(std::string_view)>& on_line) = 0;
};

class KubeHttp : public KubeTransport {
 public:
  // `stop`, once true, ends a request in progress within about a second.
  // `request_timeout` bounds a Get, `stream_timeout` a Stream (longer than
  // the watch's own timeoutSeconds, so a silent server is given up on).
  KubeHttp(KubeConfig config, const std::atomic<bool>* stop, std::chrono::seconds request_timeout,
           std::chrono::seconds stream_timeout);
  ~KubeHttp() override;
  HttpResult Get(const std::string& path, size_t max_body) override;
  HttpResult Stream(const std::string& path, size_t max_line, const std::function<void()>& on_open,
                    const std::function<bool(std::string_view)>& on_line) override;

  // libcurl's process-wide setup; call once before any thread uses a client.
  static void GlobalInit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace podtap
