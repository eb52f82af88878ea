// Tests the metrics endpoints over real loopback HTTP: content negotiation
// (OpenMetrics), gzip, match[] selectors, /metrics.json, /metrics/influxdb
// and the server's self metrics.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/metrics/metric_sources.h"
#include "exporter/http_server.h"
#include "exporter/influx_format.h"
#include "exporter/json_format.h"
#include "exporter/process_metrics.h"
#include "exporter/selector.h"
#include "exporter/text_format.h"
#include "tests/unit/gunzip.h"
#include "tests/unit/hostile_snapshot.h"

namespace podtap {
namespace {

struct Response {
  int status = 0;
  std::string head;  // status line and headers, lower-cased
  std::string body;
  bool HasHeader(const std::string& lower_case_line) const {
    return head.find("\r\n" + lower_case_line + "\r\n") != std::string::npos;
  }
};

Response Get(int port, const std::string& target, const std::string& headers = "") {
  Response r;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect failed";
    close(fd);
    return r;
  }
  const std::string request =
      "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n" + headers + "Connection: close\r\n\r\n";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string raw;
  char buf[65536];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) {
    ADD_FAILURE() << "no response header";
    return r;
  }
  r.head = raw.substr(0, end + 2);
  std::transform(r.head.begin(), r.head.end(), r.head.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  r.body = raw.substr(end + 4);
  r.status = std::stoi(r.head.substr(r.head.find(' ') + 1, 3));
  return r;
}

using testing::Gunzip;

// One server for the suite: starting one per test would add up.
class MetricsEndpointsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Wired as the agent's: the snapshot, then the server's and the process' own families.
    sources_ = std::make_unique<MetricSources>();
    server_ = std::make_unique<HttpServer>(
        "127.0.0.1:0",
        [] {
          Snapshot s = testing::HostileSnapshot();
          sources_->AppendTo(&s);
          return s;
        },
        [] { return std::string(); });
    sources_->Register([](Snapshot* s) { server_->AppendSelfMetrics(s); });
    sources_->Register([](Snapshot* s) {
      for (MetricFamily& f : ProcessMetrics()) s->families.push_back(std::move(f));
    });
    ASSERT_EQ(server_->Start(), "");
  }
  static void TearDownTestSuite() {
    server_.reset();
    sources_.reset();
  }
  static int port() { return server_->port(); }
  static inline std::unique_ptr<MetricSources> sources_;
  static inline std::unique_ptr<HttpServer> server_;
};

TEST_F(MetricsEndpointsTest, OpenMetricsWhenAccepted) {
  const Response r =
      Get(port(), "/metrics",
          "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(
      r.HasHeader("content-type: application/openmetrics-text; version=1.0.0; "
                  "charset=utf-8"))
      << r.head;
  const std::string om = WriteOpenMetrics(testing::HostileSnapshot());
  EXPECT_EQ(r.body.substr(0, om.size() - 6), om.substr(0, om.size() - 6));
  EXPECT_TRUE(r.body.ends_with("\n# EOF\n"));
  EXPECT_NE(r.body.find("# TYPE podtap_scrapes counter\n"), std::string::npos);
  EXPECT_NE(r.body.find("# UNIT process_resident_memory_bytes bytes\n"), std::string::npos);
}

TEST_F(MetricsEndpointsTest, TextByDefaultWithSelfMetrics) {
  Get(port(), "/metrics.json");  // one JSON scrape, seen in the next scrape's stats
  const Response r = Get(port(), "/metrics");
  EXPECT_TRUE(r.HasHeader(std::string("content-type: ") + kTextContentType)) << r.head;
  EXPECT_FALSE(r.HasHeader("content-encoding: gzip"));
  EXPECT_NE(r.body.find("podtap_scrapes_total{endpoint=\"/metrics.json\"} "), std::string::npos);
  EXPECT_NE(r.body.find("podtap_scrape_size_bytes{endpoint=\"/metrics.json\"} "),
            std::string::npos);
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_virtual_memory_bytes ", "process_open_fds ", "process_max_fds ",
                           "process_start_time_seconds "}) {
    EXPECT_NE(r.body.find(std::string("\n") + name), std::string::npos) << name;
  }
}

TEST_F(MetricsEndpointsTest, GzipWhenAccepted) {
  const Response r = Get(port(), "/metrics", "Accept-Encoding: deflate, gzip\r\n");
  EXPECT_TRUE(r.HasHeader("content-encoding: gzip")) << r.head;
  EXPECT_TRUE(r.HasHeader("content-length: " + std::to_string(r.body.size()))) << r.head;
  const std::string text = WriteTextFormat(testing::HostileSnapshot());
  EXPECT_EQ(Gunzip(r.body).substr(0, text.size()), text);
}

TEST_F(MetricsEndpointsTest, MatchSelectsASubset) {
  // Raw brackets, as curl -g sends them, and percent-encoded, as most clients do.
  for (const char* target :
       {"/metrics?match[]=tcp_open_connections", "/metrics?match%5B%5D=tcp_open_connections"}) {
    const Response r = Get(port(), target);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body,
              "# HELP tcp_open_connections Open connections.\n"
              "# TYPE tcp_open_connections gauge\n"
              "tcp_open_connections{pod=\"web-0\"} 2\n")
        << target;
  }
  // Two selectors: a union; URL-encoded quotes, braces and regex.
  const Response r = Get(port(),
                         "/metrics?match[]=%7Bpod%3D%22web-0%22%7D&match[]="
                         "%7B__name__%3D~%22response_.*%22%7D");
  EXPECT_NE(r.body.find("tcp_open_connections{"), std::string::npos);
  EXPECT_NE(r.body.find("response_latency_ms_bucket{"), std::string::npos);
  EXPECT_EQ(r.body.find("request_total"), std::string::npos);
}

TEST_F(MetricsEndpointsTest, BadSelectorIs400) {
  const Response r = Get(port(), "/metrics?match[]=%7Ba%3Db%7D");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad match[]: expected a quoted value"), std::string::npos) << r.body;
}

TEST_F(MetricsEndpointsTest, Json) {
  const Response r = Get(port(), "/metrics.json?pretty=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.HasHeader("content-type: application/json")) << r.head;
  EXPECT_NE(r.body.find("\n  \"families\""), std::string::npos);
  const auto doc = nlohmann::json::parse(r.body);
  EXPECT_EQ(doc["families"][0]["name"], "request_total");
  const Response compact = Get(port(), "/metrics.json?match[]=request_total");
  EXPECT_EQ(compact.body, WriteJson(SelectSeries(testing::HostileSnapshot(),
                                                 {*ParseSelector("request_total", nullptr)}),
                                    false));
}

TEST_F(MetricsEndpointsTest, InfluxLinesCarryTheSnapshot) {
  const Response r =
      Get(port(), "/metrics/influxdb?match[]=%7B__name__%21~%22process_.*%7Cpodtap_.*%22%7D");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(std::count(r.body.begin(), r.body.end(), '\n'), 3) << r.body;
  EXPECT_EQ(r.body.rfind("request_total,direction=inbound,authority=a\"b\\\\c\\ d\\ e\\,f", 0), 0u)
      << r.body;
  EXPECT_NE(r.body.find("\ntcp_open_connections,pod=web-0 gauge=2 "), std::string::npos);
}

}  // namespace
}  // namespace podtap
