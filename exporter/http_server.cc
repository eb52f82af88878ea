// The metrics server's sockets: an epoll front thread owns every connection
// (accept, request heads, responses, limits and deadlines) and hands complete
// requests to worker threads, which build the answers (http_endpoints.cc).
// Listen flags are parsed in listener.cc.
#include "exporter/http_server.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "exporter/http_request.h"
#include "exporter/http_response.h"
#include "exporter/listener.h"

namespace podtap {
namespace {

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

}  // namespace podtap
