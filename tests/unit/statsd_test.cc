// Tests StatsD encoding (deltas, gauges, sampling, tags) and the push over a
// real loopback UDP socket, parsing what arrives.
#include "exporter/statsd.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <sstream>

#include "tests/unit/hostile_snapshot.h"

namespace podtap {
namespace {

Snapshot Counters(double requests, double open_now) {
  Snapshot s;
  MetricFamily c;
  c.name = "request_total";
  c.type = MetricType::kCounter;
  c.samples = {{{{"direction", "inbound"}, {"pod", "api-0"}}, requests, {}}};
  s.families.push_back(c);
  MetricFamily g;
  g.name = "tcp_open_connections";
  g.type = MetricType::kGauge;
  g.samples = {{{{"pod", "api-0"}}, open_now, {}}};
  s.families.push_back(g);
  return s;
}

TEST(StatsdEncoderTest, CountersAsDeltasGaugesAsValues) {
  StatsdEncoder enc({.prefix = "pt"});
  EXPECT_EQ(enc.Encode(Counters(5, 2)),
            (std::vector<std::string>{"pt.request_total:5|c|#direction:inbound,pod:api-0",
                                      "pt.tcp_open_connections:2|g|#pod:api-0"}));
  EXPECT_EQ(enc.Encode(Counters(12, -1)),
            (std::vector<std::string>{"pt.request_total:7|c|#direction:inbound,pod:api-0",
                                      "pt.tcp_open_connections:0|g|#pod:api-0",
                                      "pt.tcp_open_connections:-1|g|#pod:api-0"}));
  // No change: no counter line; a reset (expired and back) sends the new value.
  EXPECT_EQ(enc.Encode(Counters(12, 0)).size(), 1u);
  EXPECT_EQ(enc.Encode(Counters(3, 0))[0], "pt.request_total:3|c|#direction:inbound,pod:api-0");
}

TEST(StatsdEncoderTest, HistogramsAndHostileTags) {
  StatsdEncoder enc({.prefix = ""});
  const auto lines = enc.Encode(testing::HostileSnapshot());
  std::string all;
  for (const auto& l : lines) {
    all += l + "\n";
    EXPECT_EQ(l.find('\n'), std::string::npos) << l;
    // name:value|type|#tags — exactly one '#', tags without '|' or ','.
    EXPECT_EQ(std::count(l.begin(), l.end(), '|'), 2) << l;
  }
  EXPECT_TRUE(testing::IsValidUtf8(all));
  EXPECT_NE(all.find("response_latency_ms.count:4|c|#authority:"), std::string::npos) << all;
  EXPECT_NE(all.find("response_latency_ms.sum:31.5|c|#"), std::string::npos) << all;
}

TEST(StatsdEncoderTest, SampleRateTagsAndThinsCounters) {
  StatsdEncoder enc({.sample_rate = 0.25}, 42);
  int sent = 0;
  for (int i = 1; i <= 400; i++) {
    for (const auto& l : enc.Encode(Counters(i, 1))) {
      if (l.rfind("podtap.request_total:1|c|@0.25|#", 0) == 0) sent++;
    }
  }
  EXPECT_GT(sent, 60);
  EXPECT_LT(sent, 140);
}

TEST(StatsdPusherTest, PushesOverLoopbackUdp) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  std::atomic<int> requests{0};
  StatsdPusher pusher({.host = "127.0.0.1",
                       .port = ntohs(addr.sin_port),
                       .prefix = "podtap",
                       .interval = std::chrono::milliseconds(20)},
                      [&] { return Counters(requests += 10, 3); });
  ASSERT_EQ(pusher.Start(), "");
  double total = 0;
  int gauges = 0;
  char buf[2048];
  while (gauges < 5) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << "no datagram within 5 s";
    std::istringstream lines(std::string(buf, static_cast<size_t>(n)));
    std::string line;
    while (std::getline(lines, line)) {
      const size_t colon = line.find(':');
      const size_t bar = line.find('|');
      ASSERT_NE(colon, std::string::npos) << line;
      const std::string name = line.substr(0, colon);
      const double value = std::stod(line.substr(colon + 1, bar - colon - 1));
      if (name == "podtap.request_total") {
        EXPECT_EQ(line.substr(bar), "|c|#direction:inbound,pod:api-0");
        total += value;
      } else {
        EXPECT_EQ(line, "podtap.tcp_open_connections:3|g|#pod:api-0");
        gauges++;
      }
    }
  }
  pusher.Stop();
  // Deltas add up to the counter's value at the last push: 10 per push.
  EXPECT_EQ(total, gauges * 10.0);
  close(fd);
}

TEST(StatsdPusherTest, UnresolvableHostIsAnError) {
  StatsdPusher pusher({.host = "no-such-host.invalid"}, [] { return Snapshot{}; });
  EXPECT_NE(pusher.Start().find("cannot resolve"), std::string::npos);
}

}  // namespace
}  // namespace podtap
