// Serves the metrics endpoints, /healthz and /readyz over HTTP for Prometheus,
// scripts and the kubelet: an epoll front thread owns every socket, worker
// threads build the answers.
#include "exporter/http_server.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "exporter/gzip.h"
#include "exporter/http_request.h"
#include "exporter/influx_format.h"
#include "exporter/json_format.h"
#include "exporter/negotiation.h"
#include "exporter/process_metrics.h"
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

// After the response, the front reads and discards what the client still
// sends for this long before closing, so that closing with unread bytes does
// not reset the connection and destroy the response in flight.
constexpr std::chrono::milliseconds kLingerTimeout{1000};
// Accepts per wake-up of the front thread, so that a flood of connections
// cannot keep it from serving the ones it has.
constexpr int kAcceptBatch = 64;
// How long accepting pauses after accept() fails for want of file
// descriptors or memory (the listening socket would stay readable).
constexpr std::chrono::milliseconds kAcceptPause{100};

constexpr std::array<const char*, kHttpDropCount> kDropReasons = {
    "head_timeout", "evicted", "refused", "head_too_large", "bad_request", "write_timeout"};

struct ListenSpec {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool any = false;   // ":PORT": every interface, dual-stack when the kernel has IPv6
  std::string error;  // non-empty when the flag cannot be served
};

ListenSpec ParseListenAddress(std::string_view flag) {
  ListenSpec spec;
  const size_t colon = flag.rfind(':');
  if (colon == std::string_view::npos) {
    spec.error = "expected HOST:PORT, [IPV6]:PORT or :PORT";
    return spec;
  }
  const std::string_view host = flag.substr(0, colon);
  const std::string_view port_text = flag.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    spec.error = "port must be a number from 0 to 65535";
    return spec;
  }
  if (host.empty()) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&spec.addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    a->sin6_addr = in6addr_any;
    spec.len = sizeof(*a);
    spec.any = true;
    return spec;
  }
  if (host.front() == '[' && host.back() == ']') {
    const std::string literal(host.substr(1, host.size() - 2));
    auto* a = reinterpret_cast<sockaddr_in6*>(&spec.addr);
    if (inet_pton(AF_INET6, literal.c_str(), &a->sin6_addr) != 1) {
      spec.error = "\"" + literal + "\" is not an IPv6 address";
      return spec;
    }
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    spec.len = sizeof(*a);
    return spec;
  }
  const std::string literal(host);
  auto* a = reinterpret_cast<sockaddr_in*>(&spec.addr);
  if (inet_pton(AF_INET, literal.c_str(), &a->sin_addr) != 1) {
    spec.error = "\"" + literal +
                 "\" is not an IP address (use e.g. 127.0.0.1:4191, [::1]:4191, or :4191 for "
                 "all interfaces)";
    return spec;
  }
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<uint16_t>(port));
  spec.len = sizeof(*a);
  return spec;
}

// strerror, starting lower-case to follow "cannot listen on X: ".
std::string ErrnoText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) {
    text.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(text.front())));
  }
  return text;
}

// Binds and listens; the socket, or -1 with `error` set.
int OpenListener(const ListenSpec& spec, std::string* error) {
  sockaddr_storage addr = spec.addr;
  socklen_t len = spec.len;
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && spec.any && errno == EAFNOSUPPORT) {
    // A kernel without IPv6: ":PORT" means every IPv4 interface.
    const uint16_t port = reinterpret_cast<const sockaddr_in6*>(&spec.addr)->sin6_port;
    addr = {};
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = port;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof(*a);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) {
    *error = ErrnoText(errno);
    return -1;
  }
  const int on = 1;
  const int off = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (addr.ss_family == AF_INET6 && spec.any) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    *error = ErrnoText(errno);
    close(fd);
    return -1;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

const char* StatusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Service Unavailable";
  }
}

constexpr const char* kPlainText = "text/plain; charset=utf-8";

// A whole response; every connection closes after one.
std::string Respond(int status, const char* content_type, const std::string& body,
                    const char* allow = nullptr, bool gzipped = false) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + StatusText(status) + "\r\n";
  out += std::string("Content-Type: ") + content_type + "\r\n";
  if (gzipped) out += "Content-Encoding: gzip\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (allow != nullptr) out += std::string("Allow: ") + allow + "\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

MetricFamily SelfFamily(const char* name, const char* help, MetricType type, const char* unit) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  f.unit = unit;
  return f;
}

constexpr std::array<std::string_view, kScrapeEndpointCount> kEndpoints = {
    "/metrics", "/metrics.json", "/metrics/influxdb"};

}  // namespace

struct HttpServer::Runtime {
  struct Connection {
    enum class State : uint8_t { kReading, kAnswering, kWriting, kLingering } state;
    uint64_t seq;
    Clock::time_point deadline;
    std::string buf;  // the head read so far, then the response
    size_t sent = 0;
    bool polled = false;  // registered with epoll
  };
  struct Answer {
    int fd;
    uint64_t seq;
    std::string response;
  };

  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;  // eventfd: answers are ready, or Stop() was called
  std::thread front;
  std::vector<std::thread> workers;
  std::atomic<bool> stopping{false};

  // The front thread's alone.
  std::unordered_map<int, Connection> conns;
  uint64_t next_seq = 0;
  Clock::time_point accept_paused_until{};
  bool accept_polled = true;

  // Shared by the front and the workers.
  std::mutex mu;
  std::condition_variable work;
  std::deque<HttpRequest> requests;
  std::vector<Answer> answers;

  ~Runtime() {
    for (int fd : {listen_fd, epoll_fd, wake_fd}) {
      if (fd >= 0) close(fd);
    }
  }
  void Wake() const {
    const uint64_t one = 1;
    // A full counter already wakes the front; nothing else can fail here.
    (void)!write(wake_fd, &one, sizeof one);
  }
};

HttpServer::HttpServer(std::string listen_address, SnapshotProvider snapshot,
                       ReadinessCheck readiness, ReadinessDetail detail, HttpLimits limits)
    : listen_address_(std::move(listen_address)),
      snapshot_(std::move(snapshot)),
      readiness_(std::move(readiness)),
      detail_(std::move(detail)),
      limits_(limits) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::CheckListenAddress(const std::string& listen_address) {
  const ListenSpec spec = ParseListenAddress(listen_address);
  return spec.error.empty() ? "" : "cannot listen on " + listen_address + ": " + spec.error;
}

std::string HttpServer::Start() {
  const std::string prefix = "cannot listen on " + listen_address_ + ": ";
  if (runtime_ != nullptr) return prefix + "server already started";
  const ListenSpec spec = ParseListenAddress(listen_address_);
  if (!spec.error.empty()) return prefix + spec.error;

  auto rt = std::make_unique<Runtime>();
  std::string error;
  rt->listen_fd = OpenListener(spec, &error);
  if (rt->listen_fd < 0) return prefix + error;
  rt->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  rt->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (rt->epoll_fd < 0 || rt->wake_fd < 0) return prefix + ErrnoText(errno);
  for (int fd : {rt->listen_fd, rt->wake_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(rt->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return prefix + ErrnoText(errno);
  }
  port_ = BoundPort(rt->listen_fd);
  runtime_ = std::move(rt);
  runtime_->front = std::thread([this] { FrontLoop(); });
  for (int i = 0; i < std::max(1, limits_.workers); i++) {
    runtime_->workers.emplace_back([this] { WorkerLoop(); });
  }
  return {};
}

void HttpServer::Stop() {
  if (runtime_ == nullptr) return;
  runtime_->stopping = true;
  runtime_->Wake();
  {
    std::lock_guard lock(runtime_->mu);
    runtime_->work.notify_all();
  }
  runtime_->front.join();
  for (auto& t : runtime_->workers) t.join();
  runtime_.reset();  // closes the listening socket
  port_ = 0;
  std::lock_guard lock(stats_mutex_);
  open_connections_ = 0;
}

void HttpServer::Drop(HttpDrop reason) {
  std::lock_guard lock(stats_mutex_);
  drops_[static_cast<size_t>(reason)]++;
}

void HttpServer::FrontLoop() {
  Runtime& rt = *runtime_;
  std::array<epoll_event, 64> events;
  while (!rt.stopping) {
    const int n = epoll_wait(rt.epoll_fd, events.data(), events.size(), NextTimeoutMs());
    if (n < 0 && errno != EINTR) {
      spdlog::error("http: epoll_wait: {}; the metrics server stops", std::strerror(errno));
      break;
    }
    for (int i = 0; i < n && !rt.stopping; i++) {
      const int fd = events[i].data.fd;
      if (fd == rt.listen_fd) {
        Accept();
      } else if (fd == rt.wake_fd) {
        uint64_t count;
        (void)!read(rt.wake_fd, &count, sizeof count);
        std::vector<Runtime::Answer> answers;
        {
          std::lock_guard lock(rt.mu);
          answers.swap(rt.answers);
        }
        for (auto& a : answers) {
          const auto it = rt.conns.find(a.fd);
          if (it != rt.conns.end() && it->second.seq == a.seq) {
            StartWriting(a.fd, std::move(a.response));
          }
        }
      } else if (events[i].events & EPOLLOUT) {
        OnWritable(fd);
      } else {
        OnReadable(fd);
      }
    }
    ExpireDeadlines();
  }
  for (const auto& [fd, conn] : rt.conns) close(fd);
  rt.conns.clear();
}

int HttpServer::NextTimeoutMs() const {
  const Runtime& rt = *runtime_;
  std::optional<Clock::time_point> next;
  if (!rt.accept_polled) next = rt.accept_paused_until;
  for (const auto& [fd, conn] : rt.conns) {
    if (conn.state == Runtime::Connection::State::kAnswering) continue;
    if (!next || conn.deadline < *next) next = conn.deadline;
  }
  if (!next) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60000));
}

void HttpServer::Accept() {
  Runtime& rt = *runtime_;
  using State = Runtime::Connection::State;
  for (int i = 0; i < kAcceptBatch; i++) {
    const int fd = accept4(rt.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // Out of file descriptors or memory: the pending connection stays
      // queued in the kernel; stop polling the listener for a moment.
      spdlog::warn("http: accept: {}; pausing for {} ms", std::strerror(errno),
                   kAcceptPause.count());
      epoll_ctl(rt.epoll_fd, EPOLL_CTL_DEL, rt.listen_fd, nullptr);
      rt.accept_polled = false;
      rt.accept_paused_until = Clock::now() + kAcceptPause;
      return;
    }
    if (rt.conns.size() >= limits_.max_connections) {
      // The slot of the connection that has been sending its head the
      // longest, a slow client's, goes to the newcomer.
      auto oldest = rt.conns.end();
      for (auto it = rt.conns.begin(); it != rt.conns.end(); ++it) {
        if (it->second.state == State::kReading &&
            (oldest == rt.conns.end() || it->second.seq < oldest->second.seq)) {
          oldest = it;
        }
      }
      if (oldest == rt.conns.end()) {
        close(fd);
        Drop(HttpDrop::kRefused);
        continue;
      }
      CloseConnection(oldest->first);
      Drop(HttpDrop::kEvicted);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    if (epoll_ctl(rt.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      Drop(HttpDrop::kRefused);
      continue;
    }
    rt.conns[fd] = {
        State::kReading, rt.next_seq++, Clock::now() + limits_.head_timeout, {}, 0, true};
    std::lock_guard lock(stats_mutex_);
    open_connections_ = rt.conns.size();
  }
}

void HttpServer::CloseConnection(int fd) {
  Runtime& rt = *runtime_;
  // Closing the socket also removes it from the epoll set.
  close(fd);
  rt.conns.erase(fd);
  std::lock_guard lock(stats_mutex_);
  open_connections_ = rt.conns.size();
}

void HttpServer::OnReadable(int fd) {
  Runtime& rt = *runtime_;
  using State = Runtime::Connection::State;
  const auto it = rt.conns.find(fd);
  if (it == rt.conns.end()) return;
  Runtime::Connection& conn = it->second;
  if (conn.state == State::kLingering) {
    char discard[4096];
    ssize_t n;
    // Bounded: the socket is non-blocking, and the deadline ends lingering.
    while ((n = recv(fd, discard, sizeof discard, 0)) > 0) {
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) CloseConnection(fd);
    return;
  }
  if (conn.state == State::kWriting) {
    OnWritable(fd);  // an error or hang-up while writing: the send says which
    return;
  }
  if (conn.state != State::kReading) return;
  // At most one byte past the limit is kept, enough to know it was passed.
  char chunk[4096];
  bool ended = false;  // end of stream or an error: no more bytes will come
  while (conn.buf.size() <= limits_.max_head_bytes) {
    const size_t room = limits_.max_head_bytes + 1 - conn.buf.size();
    const ssize_t n = recv(fd, chunk, std::min(room, sizeof chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ended = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
      break;
    }
    conn.buf.append(chunk, static_cast<size_t>(n));
  }
  const size_t end = HeadEnd(conn.buf);
  if (end == std::string::npos || end > limits_.max_head_bytes) {
    if (conn.buf.size() <= limits_.max_head_bytes) {
      // The client left before its request head was complete, or it is on its way.
      if (ended) CloseConnection(fd);
      return;
    }
    Drop(HttpDrop::kHeadTooLarge);
    StartWriting(fd, Respond(431, kPlainText, "request head too large\n"));
    return;
  }
  HttpRequest request;
  const int status =
      ParseHead(std::string_view(conn.buf).substr(0, end), limits_.max_header_lines, &request);
  if (status != 0) {
    Drop(status == 431 ? HttpDrop::kHeadTooLarge : HttpDrop::kBadRequest);
    StartWriting(fd, Respond(status, kPlainText,
                             status == 431 ? "too many header lines\n" : "bad request\n"));
    return;
  }
  // Quiet until the answer comes: the socket is out of the epoll set, so a
  // hang-up cannot spin the loop, and stays open, so its number cannot be
  // reused by another connection before the answer is matched to it.
  epoll_ctl(rt.epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
  conn.polled = false;
  conn.state = State::kAnswering;
  conn.buf.clear();
  request.fd = fd;
  request.seq = conn.seq;
  {
    std::lock_guard lock(rt.mu);
    rt.requests.push_back(std::move(request));
  }
  rt.work.notify_one();
}

void HttpServer::StartWriting(int fd, std::string response) {
  Runtime& rt = *runtime_;
  Runtime::Connection& conn = rt.conns.at(fd);
  conn.state = Runtime::Connection::State::kWriting;
  conn.buf = std::move(response);
  conn.sent = 0;
  conn.deadline = Clock::now() + limits_.write_timeout;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.fd = fd;
  epoll_ctl(rt.epoll_fd, conn.polled ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  conn.polled = true;
  OnWritable(fd);
}

void HttpServer::OnWritable(int fd) {
  Runtime& rt = *runtime_;
  using State = Runtime::Connection::State;
  const auto it = rt.conns.find(fd);
  if (it == rt.conns.end()) return;
  Runtime::Connection& conn = it->second;
  if (conn.state != State::kWriting) {
    OnReadable(fd);
    return;
  }
  while (conn.sent < conn.buf.size()) {
    const ssize_t n =
        send(fd, conn.buf.data() + conn.sent, conn.buf.size() - conn.sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT comes back
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      CloseConnection(fd);  // the client went away; there is no one left to tell
      return;
    }
    conn.sent += static_cast<size_t>(n);
  }
  // All sent: no more from this side; read what the client still sends
  // until it closes too, or the linger deadline.
  shutdown(fd, SHUT_WR);
  conn.state = State::kLingering;
  conn.buf = std::string();
  conn.deadline = Clock::now() + kLingerTimeout;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  epoll_ctl(rt.epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

void HttpServer::ExpireDeadlines() {
  Runtime& rt = *runtime_;
  using State = Runtime::Connection::State;
  const auto now = Clock::now();
  if (!rt.accept_polled && now >= rt.accept_paused_until) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = rt.listen_fd;
    epoll_ctl(rt.epoll_fd, EPOLL_CTL_ADD, rt.listen_fd, &ev);
    rt.accept_polled = true;
  }
  std::vector<std::pair<int, State>> expired;
  for (const auto& [fd, conn] : rt.conns) {
    if (conn.state != State::kAnswering && conn.deadline <= now) {
      expired.emplace_back(fd, conn.state);
    }
  }
  for (const auto& [fd, state] : expired) {
    if (state == State::kReading) Drop(HttpDrop::kHeadTimeout);
    if (state == State::kWriting) Drop(HttpDrop::kWriteTimeout);
    CloseConnection(fd);
  }
}

void HttpServer::WorkerLoop() {
  Runtime& rt = *runtime_;
  while (true) {
    HttpRequest request;
    {
      std::unique_lock lock(rt.mu);
      rt.work.wait(lock, [&] { return rt.stopping || !rt.requests.empty(); });
      if (rt.stopping) return;
      request = std::move(rt.requests.front());
      rt.requests.pop_front();
    }
    std::string response = Answer(request);
    {
      std::lock_guard lock(rt.mu);
      rt.answers.push_back({request.fd, request.seq, std::move(response)});
    }
    rt.Wake();
  }
}

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
  auto open = SelfFamily("podtap_http_connections",
                         "Connections to the metrics server open now, in every state.",
                         MetricType::kGauge, "");
  auto dropped = SelfFamily("podtap_http_connections_dropped_total",
                            "Connections to the metrics server closed or refused without an "
                            "answer to their request, or answered 400/431, by reason.",
                            MetricType::kCounter, "");
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
    Sample s;
    s.value = static_cast<double>(open_connections_);
    open.samples.push_back(s);
    for (size_t i = 0; i < kHttpDropCount; i++) {
      s.labels = {{"reason", kDropReasons[i]}};
      s.value = static_cast<double>(drops_[i]);
      dropped.samples.push_back(s);
    }
  }
  snapshot->families.push_back(std::move(scrapes));
  snapshot->families.push_back(std::move(duration));
  snapshot->families.push_back(std::move(size));
  snapshot->families.push_back(std::move(open));
  snapshot->families.push_back(std::move(dropped));
  for (MetricFamily& f : ProcessMetrics()) snapshot->families.push_back(std::move(f));
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
    AppendSelfMetrics(&snapshot);
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
