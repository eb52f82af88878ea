// Serves the metrics endpoints, /healthz and /readyz over HTTP for Prometheus,
// scripts and the kubelet.
#include "exporter/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "exporter/gzip.h"
#include "exporter/influx_format.h"
#include "exporter/json_format.h"
#include "exporter/negotiation.h"
#include "exporter/process_metrics.h"
#include "exporter/selector.h"
#include "exporter/text_format.h"

namespace podtap {
namespace {

// Few threads: the clients are one or two Prometheus servers and the kubelet's
// probes; each request holds a thread only while it is answered because
// keep-alive stays off (civetweb's default), so idle scrapers pin none.
constexpr const char* kNumThreads = "4";
// Frees a worker from a client that stops sending or reading mid-request.
constexpr const char* kRequestTimeoutMs = "10000";

struct ListenSpec {
  std::string civetweb_ports;  // civetweb's "listening_ports" syntax
  std::string error;           // non-empty when the flag cannot be served
  // An address of the listening socket this process can connect to.
  std::string local_host = "127.0.0.1";
  bool local_v6 = false;
};

// Translates the agent's flag form into civetweb's syntax: ":P" becomes "+P"
// (IPv4 and IPv6 on one socket) when civetweb was built with IPv6, else "P"
// (IPv4 only); address literals are checked here because civetweb's own
// message for a bad one does not say what is wrong.
ListenSpec ParseListenAddress(std::string_view flag, bool ipv6_supported) {
  const size_t colon = flag.rfind(':');
  if (colon == std::string_view::npos) {
    return {{}, "expected HOST:PORT, [IPV6]:PORT or :PORT"};
  }
  const std::string_view host = flag.substr(0, colon);
  const std::string_view port_text = flag.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return {{}, "port must be a number from 0 to 65535"};
  }
  const std::string port_str(port_text);
  if (host.empty()) {
    return {(ipv6_supported ? "+" : "") + port_str, {}};
  }
  if (host.front() == '[' && host.back() == ']') {
    const std::string literal(host.substr(1, host.size() - 2));
    in6_addr addr6;
    if (inet_pton(AF_INET6, literal.c_str(), &addr6) != 1) {
      return {{}, "\"" + literal + "\" is not an IPv6 address"};
    }
    if (!ipv6_supported) {
      return {{}, "the installed civetweb has no IPv6 support; use an IPv4 address or :PORT"};
    }
    return {std::string(host) + ":" + port_str, {}, literal, true};
  }
  const std::string literal(host);
  in_addr addr4;
  if (inet_pton(AF_INET, literal.c_str(), &addr4) != 1) {
    return {{},
            "\"" + literal +
                "\" is not an IP address (use e.g. 127.0.0.1:4191, [::1]:4191, or :4191 for "
                "all interfaces)"};
  }
  return {literal + ":" + port_str, {}, literal, false};
}

// Connects to the server's own listening socket and hangs up at once:
// civetweb's master thread looks at its stop flag only when its poll on the
// listening sockets returns, which otherwise takes up to two seconds
// (civetweb issue #1163). Bounded: non-blocking, waits 100 ms at most.
void PokeListener(const std::string& host, bool v6, int port) {
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, host.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    poll(&p, 1, 100);
  }
  close(fd);
}

// civetweb words a failed bind as "cannot bind to X: 98 (Address already in
// use)"; the operator needs only the reason in parentheses.
std::string BindFailureReason(const std::string& message) {
  const size_t open = message.rfind('(');
  if (message.rfind("cannot bind to ", 0) != 0 || open == std::string::npos ||
      message.back() != ')') {
    return message;
  }
  std::string reason = message.substr(open + 1, message.size() - open - 2);
  if (!reason.empty()) {
    reason.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(reason.front())));
  }
  return reason;
}

void Respond(mg_connection* conn, int status, const char* content_type, const std::string& body,
             const char* allow = nullptr, bool gzipped = false) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  if (gzipped) mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(body.size()).c_str(), -1);
  if (allow != nullptr) mg_response_header_add(conn, "Allow", allow, -1);
  mg_response_header_send(conn);
  // A failed write means the client went away; there is no one left to tell.
  mg_write(conn, body.data(), body.size());
}

constexpr const char* kPlainText = "text/plain; charset=utf-8";

}  // namespace

HttpServer::HttpServer(std::string listen_address, SnapshotProvider snapshot,
                       ReadinessCheck readiness, ReadinessDetail detail)
    : listen_address_(std::move(listen_address)),
      snapshot_(std::move(snapshot)),
      readiness_(std::move(readiness)),
      detail_(std::move(detail)) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::CheckListenAddress(const std::string& listen_address) {
  const ListenSpec spec =
      ParseListenAddress(listen_address, mg_check_feature(MG_FEATURES_IPV6) != 0);
  return spec.error.empty() ? "" : "cannot listen on " + listen_address + ": " + spec.error;
}

std::string HttpServer::Start() {
  const std::string prefix = "cannot listen on " + listen_address_ + ": ";
  if (context_ != nullptr) return prefix + "server already started";

  // civetweb wants this once per process before the first server, and it is
  // not thread-safe; a function-local static gives exactly that.
  static const unsigned initialized = mg_init_library(0);
  (void)initialized;

  const ListenSpec spec =
      ParseListenAddress(listen_address_, mg_check_feature(MG_FEATURES_IPV6) != 0);
  if (!spec.error.empty()) return prefix + spec.error;

  // No document_root: civetweb serves no files and lists no directories, so
  // only the handler below ever answers.
  const char* options[] = {"listening_ports",
                           spec.civetweb_ports.c_str(),
                           "num_threads",
                           kNumThreads,
                           "request_timeout_ms",
                           kRequestTimeoutMs,
                           "enable_directory_listing",
                           "no",
                           nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = &HttpServer::LogMessage;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = this;
  init.configuration_options = options;
  char error_text[256] = "";
  mg_error_data error{};
  error.text = error_text;
  error.text_buffer_size = sizeof error_text;

  {
    std::lock_guard lock(log_mutex_);
    starting_ = true;
    start_error_.clear();
  }
  mg_context* context = mg_start2(&init, &error);
  std::string logged_error;
  {
    std::lock_guard lock(log_mutex_);
    starting_ = false;
    logged_error = std::move(start_error_);
  }
  if (context == nullptr) {
    // The logged message names the cause; mg_start2's own text is generic
    // ("Failed to setup server ports").
    return prefix + BindFailureReason(logged_error.empty() ? error_text : logged_error);
  }

  mg_server_port ports[2] = {};
  const int n = mg_get_server_ports(context, 2, ports);
  if (n < 1) {
    mg_stop(context);
    return prefix + "civetweb reports no bound port";
  }
  context_ = context;
  port_ = ports[0].port;
  local_host_ = spec.local_host;
  local_v6_ = spec.local_v6;
  // "/" matches every path, so 404 and 405 come from one place.
  mg_set_request_handler(context_, "/", &HttpServer::HandleRequest, this);
  return {};
}

void HttpServer::Stop() {
  if (context_ == nullptr) return;
  // mg_stop() raises civetweb's stop flag, then waits for its threads; the
  // pokes wake the master thread once the flag is up (one that comes before
  // it is an empty connection a worker closes at once).
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    mg_stop(context_);
    stopped = true;
  });
  for (int i = 0; i < 100 && !stopped; i++) {
    PokeListener(local_host_, local_v6_, port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stopper.join();
  context_ = nullptr;
  port_ = 0;
}

namespace {

constexpr std::array<std::string_view, kScrapeEndpointCount> kEndpoints = {
    "/metrics", "/metrics.json", "/metrics/influxdb"};

// Every match[] parameter of the query string, URL-decoded; false with
// `error` set when one is not a selector. civetweb compares parameter names
// undecoded, so the percent-encoded spelling most clients send is asked for
// too.
bool ParseMatchParams(const char* query, std::vector<Selector>* selectors, std::string* error) {
  if (query == nullptr) return true;
  const size_t len = std::strlen(query);
  std::string value(len + 1, '\0');
  for (const char* name : {"match[]", "match%5B%5D"}) {
    for (int i = 0;; i++) {
      const int n = mg_get_var2(query, len, name, value.data(), value.size(), i);
      if (n < 0) break;  // no more (the buffer is as long as the query)
      auto sel = ParseSelector(std::string_view(value.data(), static_cast<size_t>(n)), error);
      if (!sel) return false;
      selectors->push_back(std::move(*sel));
    }
  }
  return true;
}

bool QueryFlag(const char* query, const char* name) {
  if (query == nullptr) return false;
  char value[8];
  const int n = mg_get_var(query, std::strlen(query), name, value, sizeof value);
  return n > 0 && std::string_view(value, static_cast<size_t>(n)) != "0" &&
         std::string_view(value, static_cast<size_t>(n)) != "false";
}

MetricFamily SelfFamily(const char* name, const char* help, MetricType type, const char* unit) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  f.unit = unit;
  return f;
}

}  // namespace

void HttpServer::AppendSelfMetrics(Snapshot* snapshot) const {
  auto scrapes = SelfFamily("podtap_scrapes_total", "Requests answered, by metrics endpoint.",
                            MetricType::kCounter, "");
  auto duration = SelfFamily("podtap_scrape_duration_seconds",
                             "Time the previous request of each metrics endpoint took to build "
                             "its body (snapshot, serialisation and compression).",
                             MetricType::kGauge, "seconds");
  auto size = SelfFamily("podtap_scrape_size_bytes",
                         "Body size of the previous response of each metrics endpoint, as sent "
                         "(after compression).",
                         MetricType::kGauge, "bytes");
  {
    std::lock_guard lock(stats_mutex_);
    for (size_t i = 0; i < kScrapeEndpointCount; i++) {
      const Labels labels = {{"endpoint", std::string(kEndpoints[i])}};
      Sample s;
      s.labels = labels;
      s.value = static_cast<double>(stats_[i].count);
      scrapes.samples.push_back(s);
      s.value = stats_[i].last_seconds;
      duration.samples.push_back(s);
      s.value = static_cast<double>(stats_[i].last_bytes);
      size.samples.push_back(s);
    }
  }
  snapshot->families.push_back(std::move(scrapes));
  snapshot->families.push_back(std::move(duration));
  snapshot->families.push_back(std::move(size));
  for (MetricFamily& f : ProcessMetrics()) snapshot->families.push_back(std::move(f));
}

int HttpServer::HandleRequest(mg_connection* conn, void* self_ptr) {
  const auto* self = static_cast<const HttpServer*>(self_ptr);
  const mg_request_info* request = mg_get_request_info(conn);
  const std::string_view path = request->local_uri != nullptr ? request->local_uri : "";
  const std::string_view method = request->request_method != nullptr ? request->request_method : "";

  size_t endpoint = kScrapeEndpointCount;
  for (size_t i = 0; i < kScrapeEndpointCount; i++) {
    if (path == kEndpoints[i]) endpoint = i;
  }
  if (endpoint == kScrapeEndpointCount && path != "/healthz" && path != "/readyz") {
    Respond(conn, 404, kPlainText, "not found\n");
    return 404;
  }
  if (method != "GET") {
    Respond(conn, 405, kPlainText, "method not allowed\n", "GET");
    return 405;
  }
  // The providers belong to other modules; whatever they throw must not
  // unwind into civetweb's C code, which would end the process.
  try {
    if (endpoint < kScrapeEndpointCount) return self->ServeMetrics(conn, endpoint);
    if (path == "/healthz") {
      Respond(conn, 200, kPlainText, "ok\n");
      return 200;
    }
    const std::string reason = self->readiness_();
    std::string detail = self->detail_ ? self->detail_() : "";
    if (!detail.empty()) detail += "\n";
    if (reason.empty()) {
      Respond(conn, 200, kPlainText, "ready\n" + detail);
      return 200;
    }
    Respond(conn, 503, kPlainText, reason + "\n" + detail);
    return 503;
  } catch (const std::exception& e) {
    spdlog::error("http: {} {} failed: {}", method, path, e.what());
    Respond(conn, 500, kPlainText, std::string("internal error: ") + e.what() + "\n");
    return 500;
  }
}

int HttpServer::ServeMetrics(mg_connection* conn, size_t endpoint) const {
  const auto start = std::chrono::steady_clock::now();
  const mg_request_info* request = mg_get_request_info(conn);
  std::vector<Selector> selectors;
  std::string error;
  if (!ParseMatchParams(request->query_string, &selectors, &error)) {
    Respond(conn, 400, kPlainText, "bad match[]: " + error + "\n");
    return 400;
  }
  Snapshot snapshot = snapshot_();
  AppendSelfMetrics(&snapshot);
  if (!selectors.empty()) snapshot = SelectSeries(snapshot, selectors);

  std::string body;
  const char* content_type = kTextContentType;
  switch (endpoint) {
    case 0: {
      const char* accept = mg_get_header(conn, "Accept");
      if (NegotiateMetricsFormat(accept != nullptr ? accept : "") == MetricsFormat::kOpenMetrics) {
        body = WriteOpenMetrics(snapshot);
        content_type = kOpenMetricsContentType;
      } else {
        body = WriteTextFormat(snapshot);
      }
      break;
    }
    case 1:
      body = WriteJson(snapshot, QueryFlag(request->query_string, "pretty"));
      content_type = kJsonContentType;
      break;
    default:
      body =
          WriteInfluxLineProtocol(snapshot, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
      content_type = kInfluxContentType;
  }
  const char* encoding = mg_get_header(conn, "Accept-Encoding");
  const bool gzipped = AcceptsGzip(encoding != nullptr ? encoding : "");
  if (gzipped) body = Gzip(body);
  {
    std::lock_guard lock(stats_mutex_);
    stats_[endpoint].count++;
    stats_[endpoint].last_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats_[endpoint].last_bytes = body.size();
  }
  Respond(conn, 200, content_type, body, nullptr, gzipped);
  return 200;
}

int HttpServer::LogMessage(const mg_connection* conn, const char* message) {
  auto* self = static_cast<HttpServer*>(mg_get_user_data(mg_get_context(conn)));
  if (self != nullptr) {
    std::lock_guard lock(self->log_mutex_);
    if (self->starting_) {
      if (self->start_error_.empty()) self->start_error_ = message;
      return 1;
    }
  }
  spdlog::warn("civetweb: {}", message);
  // Non-zero: civetweb must not also print the message to stderr itself.
  return 1;
}

}  // namespace podtap
