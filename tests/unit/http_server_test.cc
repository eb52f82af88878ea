// Tests the HTTP server end to end over real sockets: endpoints, status codes,
// content type, and a clear error when the port is taken.
#include "exporter/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/metrics/metric_sources.h"
#include "exporter/text_format.h"

namespace podtap {
namespace {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& lower_case_name) const {
    const auto it = headers.find(lower_case_name);
    return it == headers.end() ? "" : it->second;
  }
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// A deliberately plain HTTP/1.1 client, so the test depends on nothing but
// the server it tests.
Response Request(int port, const std::string& method, const std::string& path) {
  Response response;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  if (fd < 0) return response;
  // A server that never answers fails the test instead of hanging it.
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect to port " << port << " failed";
    close(fd);
    return response;
  }
  const std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string raw;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<size_t>(n));
  close(fd);

  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    ADD_FAILURE() << "no complete response header in: " << raw;
    return response;
  }
  response.body = raw.substr(header_end + 4);
  const std::string head = raw.substr(0, header_end);
  // "HTTP/1.1 200 OK"
  response.status = std::stoi(head.substr(head.find(' ') + 1, 3));
  size_t line_start = head.find("\r\n");
  while (line_start != std::string::npos) {
    line_start += 2;
    const size_t line_end = head.find("\r\n", line_start);
    const std::string line = head.substr(line_start, line_end - line_start);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      response.headers[Lower(line.substr(0, colon))] =
          line.substr(line.find_first_not_of(' ', colon + 1));
    }
    line_start = line_end;
  }
  return response;
}

Snapshot TestSnapshot() {
  Snapshot snapshot;
  snapshot.families.push_back({"tcp_open_total",
                               "Total count of opened connections.",
                               MetricType::kCounter,
                               {{{{"direction", "inbound"}, {"pod", "web \"1\""}}, 7, {}}}});
  Sample latency;
  latency.labels = {{"direction", "outbound"}};
  latency.histogram = {{1, 10}, {2, 3, 4}, 31.5, 4};
  snapshot.families.push_back(
      {"response_latency_ms", "Time to first byte.", MetricType::kHistogram, {latency}});
  return snapshot;
}

// Readiness the test can flip while the server runs on its own threads.
class Readiness {
 public:
  void Set(std::string reason) {
    std::lock_guard lock(mutex_);
    reason_ = std::move(reason);
  }
  std::string Get() {
    std::lock_guard lock(mutex_);
    return reason_;
  }

 private:
  std::mutex mutex_;
  std::string reason_;
};

// One server for the whole suite: starting one per test would add up.
class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    readiness_ = std::make_unique<Readiness>();
    server_ = std::make_unique<HttpServer>(
        "127.0.0.1:0", [] { return TestSnapshot(); }, [] { return readiness_->Get(); });
    start_error_ = server_->Start();
  }
  static void TearDownTestSuite() {
    server_.reset();
    readiness_.reset();
  }
  void SetUp() override {
    ASSERT_EQ(start_error_, "");
    readiness_->Set("");
  }
  static int port() { return server_->port(); }

  static inline std::unique_ptr<Readiness> readiness_;
  static inline std::unique_ptr<HttpServer> server_;
  static inline std::string start_error_;
};

TEST_F(HttpServerTest, PortZeroPicksAFreePort) { EXPECT_GT(port(), 0); }

TEST_F(HttpServerTest, MetricsServesTextFormat) {
  const Response r = Request(port(), "GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), kTextContentType);
  // The snapshot as the provider gave it: the server adds nothing of its own.
  EXPECT_EQ(r.body, WriteTextFormat(TestSnapshot()));
  EXPECT_EQ(r.Header("content-length"), std::to_string(r.body.size()));
}

TEST_F(HttpServerTest, MetricsIgnoresQueryString) {
  EXPECT_EQ(Request(port(), "GET", "/metrics?name[]=up").status, 200);
}

TEST_F(HttpServerTest, Healthz) {
  const Response r = Request(port(), "GET", "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
}

TEST_F(HttpServerTest, ReadyzFollowsReadinessCheck) {
  Response r = Request(port(), "GET", "/readyz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");

  readiness_->Set("pod metadata not synced yet");
  r = Request(port(), "GET", "/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "pod metadata not synced yet\n");

  readiness_->Set("");
  EXPECT_EQ(Request(port(), "GET", "/readyz").status, 200);
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  EXPECT_EQ(Request(port(), "GET", "/").status, 404);
  EXPECT_EQ(Request(port(), "GET", "/metricsx").status, 404);
  EXPECT_EQ(Request(port(), "GET", "/metrics/x").status, 404);
  EXPECT_EQ(Request(port(), "GET", "/etc/passwd").status, 404);
}

TEST_F(HttpServerTest, NonGetIs405) {
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    const Response r = Request(port(), method, "/metrics");
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.Header("allow"), "GET") << method;
  }
}

TEST_F(HttpServerTest, StartingTwiceIsAnError) { EXPECT_NE(server_->Start(), ""); }

TEST_F(HttpServerTest, PortInUseIsAnActionableError) {
  const std::string address = "127.0.0.1:" + std::to_string(port());
  HttpServer second(
      address, [] { return Snapshot{}; }, [] { return std::string(); });
  const std::string error = second.Start();
  EXPECT_EQ(error, "cannot listen on " + address + ": address already in use");
  EXPECT_EQ(second.port(), 0);
  // The first server is unaffected.
  EXPECT_EQ(Request(port(), "GET", "/healthz").status, 200);
}

TEST(HttpServerStandaloneTest, StopReleasesThePort) {
  HttpServer server(
      "127.0.0.1:0", [] { return Snapshot{}; }, [] { return std::string(); });
  ASSERT_EQ(server.Start(), "");
  const int port = server.port();
  server.Stop();
  EXPECT_EQ(server.port(), 0);
  server.Stop();  // a second Stop is harmless

  HttpServer again(
      "127.0.0.1:" + std::to_string(port), [] { return Snapshot{}; }, [] { return std::string(); });
  EXPECT_EQ(again.Start(), "");
  EXPECT_EQ(again.port(), port);
}

// The agent must exit within 2 s of SIGTERM.
TEST(HttpServerStandaloneTest, StopIsFast) {
  for (const char* address : {"127.0.0.1:0", ":0"}) {
    HttpServer server(
        address, [] { return Snapshot{}; }, [] { return std::string(); });
    ASSERT_EQ(server.Start(), "");
    EXPECT_EQ(Request(server.port(), "GET", "/healthz").status, 200);
    const auto start = std::chrono::steady_clock::now();
    server.Stop();
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, std::chrono::milliseconds(500)) << address;
  }
}

TEST(HttpServerStandaloneTest, ProviderExceptionIs500) {
  HttpServer server(
      "127.0.0.1:0", []() -> Snapshot { throw std::runtime_error("aggregator gone"); },
      [] { return std::string(); });
  ASSERT_EQ(server.Start(), "");
  const Response r = Request(server.port(), "GET", "/metrics");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "internal error: aggregator gone\n");
}

TEST(HttpServerStandaloneTest, ReadyzAppendsDetailLines) {
  std::atomic<bool> ready{false};
  HttpServer server(
      "127.0.0.1:0", [] { return Snapshot{}; },
      [&ready] { return ready ? std::string() : std::string("probes not attached"); },
      [] { return std::string("kubernetes: pods: connect: refused (0 objects)"); });
  ASSERT_EQ(server.Start(), "");
  Response r = Request(server.port(), "GET", "/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "probes not attached\nkubernetes: pods: connect: refused (0 objects)\n");
  ready = true;
  r = Request(server.port(), "GET", "/readyz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\nkubernetes: pods: connect: refused (0 objects)\n");
}

TEST(HttpServerStandaloneTest, AllInterfacesFormServesLoopback) {
  HttpServer server(
      ":0", [] { return Snapshot{}; }, [] { return std::string(); });
  ASSERT_EQ(server.Start(), "");
  EXPECT_EQ(Request(server.port(), "GET", "/healthz").body, "ok\n");
}

TEST(HttpServerStandaloneTest, MalformedAddressesAreRejected) {
  for (const char* address : {"4191", "localhost:4191", "127.0.0.1:", "127.0.0.1:65536",
                              "127.0.0.1:-1", "[nope]:4191", "300.1.1.1:4191"}) {
    HttpServer server(
        address, [] { return Snapshot{}; }, [] { return std::string(); });
    const std::string error = server.Start();
    EXPECT_EQ(error.rfind(std::string("cannot listen on ") + address + ": ", 0), 0u)
        << address << " -> " << error;
  }
}

// Sends `bytes` on a fresh connection and returns all the server sends back
// until it closes (or `timeout_s` passes without a byte).
std::string Exchange(int port, const std::string& bytes, int timeout_s = 15) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string raw;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return raw;
}

// A connection that sent the start of a request head and then nothing more.
int StalledClient(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string partial = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  EXPECT_EQ(send(fd, partial.data(), partial.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(partial.size()));
  return fd;
}

// The value of one series (e.g. `podtap_http_connections_dropped_total{reason="evicted"}`) in
// the server's /metrics, or -1 when it is not there.
double SelfMetric(int port, const std::string& series) {
  const std::string body = "\n" + Request(port, "GET", "/metrics").body;
  const size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + series.size() + 2));
}

double Dropped(int port, const std::string& reason) {
  return SelfMetric(port, "podtap_http_connections_dropped_total{reason=\"" + reason + "\"}");
}

// A snapshot provider as the agent's: `snapshot`, then the registered sources' families (the
// server's own, registered once it exists).
HttpServer::SnapshotProvider WithSources(const MetricSources& sources,
                                         std::function<Snapshot()> snapshot) {
  return [&sources, snapshot = std::move(snapshot)] {
    Snapshot s = snapshot();
    sources.AppendTo(&s);
    return s;
  };
}

// A request head over max_head_bytes (16 KiB) or with more than
// max_header_lines (64) header lines is answered 431 and counted; the server
// keeps serving.
TEST(HttpServerLimitsTest, OversizedRequestHeadIsRefused) {
  MetricSources sources;
  HttpServer server("127.0.0.1:0", WithSources(sources, TestSnapshot),
                    [] { return std::string(); });
  sources.Register([&server](Snapshot* s) { server.AppendSelfMetrics(s); });
  ASSERT_EQ(server.Start(), "");
  const std::string big =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
  std::string reply = Exchange(server.port(), big);
  EXPECT_EQ(reply.rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u)
      << reply.substr(0, 200);
  std::string many = "GET /metrics HTTP/1.1\r\n";
  for (int i = 0; i < 65; i++) many += "X-H" + std::to_string(i) + ": v\r\n";
  reply = Exchange(server.port(), many + "\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 431 ", 0), 0u) << reply.substr(0, 200);
  EXPECT_EQ(Request(server.port(), "GET", "/metrics").status, 200);
  EXPECT_EQ(Dropped(server.port(), "head_too_large"), 2);
}

TEST(HttpServerLimitsTest, MalformedRequestHeadIs400) {
  MetricSources sources;
  HttpServer server("127.0.0.1:0", WithSources(sources, TestSnapshot),
                    [] { return std::string(); });
  sources.Register([&server](Snapshot* s) { server.AppendSelfMetrics(s); });
  ASSERT_EQ(server.Start(), "");
  for (const char* head : {"GET /metrics\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
                           "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                           "G(T /metrics HTTP/1.1\r\n\r\n", "\r\n\r\n"}) {
    const std::string reply = Exchange(server.port(), head);
    EXPECT_EQ(reply.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << head;
  }
  EXPECT_EQ(Dropped(server.port(), "bad_request"), 5);
}

// A client that sends its request and then shuts down its sending side
// (printf ... | nc) still gets the answer.
TEST(HttpServerLimitsTest, HalfClosedClientIsAnswered) {
  HttpServer server(
      "127.0.0.1:0", [] { return TestSnapshot(); }, [] { return std::string(); });
  ASSERT_EQ(server.Start(), "");
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string head = "GET /healthz HTTP/1.0\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  shutdown(fd, SHUT_WR);
  std::string raw;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_EQ(raw.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << raw;
  EXPECT_TRUE(raw.ends_with("\r\n\r\nok\n")) << raw;
}

// Slowloris: 64 clients each send the start of a request head, then one byte
// now and then, never finishing it. The front thread reads every connection
// without blocking, so a scrape is answered at once; past max_connections
// (32 here) each newcomer takes the slot of the connection that has been
// sending its head the longest, and the rest are closed at head_timeout.
// (civetweb's thread per connection kept a scrape waiting > 15 s behind 8.)
TEST(HttpServerLimitsTest, SlowlorisClientsCannotStallScrapes) {
  HttpLimits limits;
  limits.max_connections = 32;
  limits.head_timeout = std::chrono::milliseconds(2000);
  MetricSources sources;
  HttpServer server(
      "127.0.0.1:0", WithSources(sources, TestSnapshot), [] { return std::string(); }, nullptr,
      limits);
  sources.Register([&server](Snapshot* s) { server.AppendSelfMetrics(s); });
  ASSERT_EQ(server.Start(), "");
  std::vector<int> slow;
  for (int i = 0; i < 64; i++) slow.push_back(StalledClient(server.port()));
  for (int fd : slow) send(fd, "X", 1, MSG_NOSIGNAL);  // evicted ones may be gone already

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Request(server.port(), "GET", "/metrics").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));

  // Every slow client is closed by the server: evicted, or at its deadline.
  for (int fd : slow) {
    timeval timeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "still open: " << std::strerror(errno);
    close(fd);
  }
  // 32 newcomers and the scrape each evicted one; the other 31 timed out.
  EXPECT_EQ(Dropped(server.port(), "evicted"), 33);
  EXPECT_EQ(Dropped(server.port(), "head_timeout"), 31);
  EXPECT_EQ(Dropped(server.port(), "refused"), 0);
  EXPECT_EQ(SelfMetric(server.port(), "podtap_http_connections"), 1);  // the scrape asking
}

// When every slot holds a request being answered, there is no slow client to
// evict: a newcomer is closed at once and counted.
TEST(HttpServerLimitsTest, NewcomersAreRefusedWhileEverySlotIsAnswered) {
  std::mutex mutex;
  std::condition_variable cv;
  int inside = 0;
  bool release = false;
  HttpLimits limits;
  limits.max_connections = 2;
  limits.workers = 2;
  MetricSources sources;
  HttpServer server(
      "127.0.0.1:0",
      WithSources(sources,
                  [&] {
                    std::unique_lock lock(mutex);
                    inside++;
                    cv.notify_all();
                    cv.wait_for(lock, std::chrono::seconds(10), [&] { return release; });
                    return TestSnapshot();
                  }),
      [] { return std::string(); }, nullptr, limits);
  sources.Register([&server](Snapshot* s) { server.AppendSelfMetrics(s); });
  ASSERT_EQ(server.Start(), "");
  std::vector<int> statuses(2);
  std::vector<std::thread> scrapers;
  for (int i = 0; i < 2; i++) {
    scrapers.emplace_back(
        [&, i] { statuses[i] = Request(server.port(), "GET", "/metrics").status; });
  }
  {
    std::unique_lock lock(mutex);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return inside == 2; }));
  }
  EXPECT_EQ(Exchange(server.port(), "GET /healthz HTTP/1.1\r\n\r\n", 5), "");
  {
    std::lock_guard lock(mutex);
    release = true;
  }
  cv.notify_all();
  for (auto& t : scrapers) t.join();
  EXPECT_EQ(statuses, std::vector<int>({200, 200}));
  EXPECT_EQ(Dropped(server.port(), "refused"), 1);
}

// A client that asks and never reads holds its slot only until
// write_timeout; then it is closed and counted.
TEST(HttpServerLimitsTest, ClientThatDoesNotReadIsClosedAtTheWriteDeadline) {
  std::atomic<bool> first{true};
  HttpLimits limits;
  limits.write_timeout = std::chrono::milliseconds(500);
  MetricSources sources;
  HttpServer server(
      "127.0.0.1:0",
      WithSources(sources,
                  [&] {
                    Snapshot s = TestSnapshot();
                    // Far more than the socket buffers hold, for the first scrape only.
                    if (first.exchange(false)) s.families[0].help = std::string(24 << 20, 'h');
                    return s;
                  }),
      [] { return std::string(); }, nullptr, limits);
  sources.Register([&server](Snapshot* s) { server.AppendSelfMetrics(s); });
  ASSERT_EQ(server.Start(), "");
  const int fd = StalledClient(server.port());
  send(fd, "\r\n", 2, MSG_NOSIGNAL);  // the head is complete; nothing is ever read
  double timed_out = 0;
  for (int i = 0; i < 50 && timed_out == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!first) timed_out = Dropped(server.port(), "write_timeout");
  }
  EXPECT_EQ(timed_out, 1);
  close(fd);
}

}  // namespace
}  // namespace podtap
