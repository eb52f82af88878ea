// Attribution and exact accounting from decoded events to the aggregator.
#include "agent/conn/tcp_pipeline.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <set>

#include "tests/churn_node.h"
#include "tests/unit/snapshot_util.h"

namespace podtap {
namespace {

using testing::Find;
using testing::Value;
using namespace std::chrono_literals;

IpAddr V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddr ip;
  ip.bytes = {a, b, c, d};
  return ip;
}

std::shared_ptr<PodMeta> Pod(std::string ns, std::string name, uint32_t netns, IpAddr ip) {
  auto p = std::make_shared<PodMeta>();
  p->ns = std::move(ns);
  p->name = std::move(name);
  p->netns_ino = netns;
  p->ips = {ip};
  return p;
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto api = Pod("shop", "api-5f7c9d8b6-abcde", 100, V4(10, 0, 0, 2));
    api->labels = {{"pod-template-hash", "5f7c9d8b6"}, {"app", "api"}};
    api->owner_kind = "ReplicaSet";
    api->owner_name = "api-5f7c9d8b6";
    auto web = Pod("shop", "web-0", 200, V4(10, 0, 0, 3));
    web->owner_kind = "StatefulSet";
    web->owner_name = "web";
    pipe.SetPods({api, web});
  }

  TcpOpen Open(uint64_t id, uint32_t netns, Direction dir, IpAddr remote) {
    TcpOpen o;
    o.conn_id = id;
    o.open_ns = 1'000'000;
    o.netns_ino = netns;
    o.direction = dir;
    o.remote = remote;
    o.base_acked = 1;  // SYN
    return o;
  }

  TcpClose Close(uint64_t id, uint64_t acked, uint64_t received) {
    TcpClose c;
    c.conn_id = id;
    c.ts_ns = 31'000'000;  // 30 ms after the open
    c.acked_total = acked;
    c.received_total = received;
    c.kernel_saw_open = true;
    return c;
  }

  Aggregator agg;
  TcpPipeline pipe{&agg, 16, {"app"}, /*capture_payload=*/false};
  const Labels api_in = {
      {"direction", "inbound"}, {"namespace", "shop"}, {"pod", "api-5f7c9d8b6-abcde"}};
  const Labels web_out = {{"direction", "outbound"}, {"pod", "web-0"}};
};

TEST_F(PipelineTest, OpenCloseAndBytesPerPodAndDirection) {
  pipe.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  pipe.OnOpen(Open(2, 200, Direction::kOutbound, V4(10, 0, 0, 2)));
  auto s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_total", api_in), 1);
  EXPECT_EQ(Value(s, "tcp_open_connections", api_in), 1);
  EXPECT_EQ(Value(s, "tcp_open_total", web_out), 1);

  pipe.OnClose(Close(1, 1 + 500, 700));
  pipe.OnClose(Close(2, 1 + 700, 500));
  s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_connections", api_in), 0);
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", api_in), 500);
  EXPECT_EQ(Value(s, "tcp_read_bytes_total", api_in), 700);
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", web_out), 700);
  Labels closed = api_in;
  closed.emplace_back("classification", "success");
  EXPECT_EQ(Value(s, "tcp_close_total", closed), 1);
  const Sample* h = Find(s, "tcp_connection_duration_ms", closed);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.count, 1u);
  EXPECT_DOUBLE_EQ(h->histogram.sum, 30.0);
  EXPECT_EQ(pipe.tracked(), 0u);
}

TEST_F(PipelineTest, AdoptedConnectionCountsBytesFromAdoptionAndNoDuration) {
  // Open before the agent started: its counters at adoption are the base, and the kernel's close
  // says it never saw the open.
  TcpOpen o = Open(7, 100, Direction::kInbound, V4(10, 0, 0, 3));
  o.base_acked = 90'001;
  o.base_received = 40'000;
  EXPECT_TRUE(pipe.Adopt(o));
  EXPECT_FALSE(pipe.Adopt(o));  // already tracked
  auto s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_connections", api_in), 1);
  EXPECT_EQ(Value(s, "podtap_connections_adopted_total", {}), 1);
  TcpClose c = Close(7, 90'001 + 300, 40'000 + 200);
  c.kernel_saw_open = false;
  pipe.OnClose(c);
  s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_connections", api_in), 0);
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", api_in), 300);
  EXPECT_EQ(Value(s, "tcp_read_bytes_total", api_in), 200);
  EXPECT_EQ(Value(s, "podtap_connections_untracked_total", {{"reason", "opened_before_start"}}), 0);
  Labels closed = api_in;
  closed.emplace_back("classification", "success");
  EXPECT_EQ(Value(s, "tcp_close_total", closed), 1);
  const Sample* h = Find(s, "tcp_connection_duration_ms", closed);
  EXPECT_TRUE(h == nullptr || h->histogram.count == 0u);  // its age is unknown
}

TEST_F(PipelineTest, OwnerAndDstLabels) {
  pipe.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  pipe.OnOpen(Open(2, 200, Direction::kOutbound, V4(10, 0, 0, 2)));
  auto s = agg.Collect();
  const Sample* in = Find(s, "tcp_open_total", api_in);
  ASSERT_NE(in, nullptr);
  EXPECT_TRUE(testing::HasLabels(in->labels, {{"peer", "src"},
                                              {"pod_template_hash", "5f7c9d8b6"},
                                              {"replicaset", "api-5f7c9d8b6"},
                                              {"deployment", "api"},
                                              {"app", "api"}}));
  const Sample* out = Find(s, "tcp_open_total", web_out);
  ASSERT_NE(out, nullptr);
  EXPECT_TRUE(testing::HasLabels(out->labels, {{"peer", "dst"},
                                               {"statefulset", "web"},
                                               {"dst_namespace", "shop"},
                                               {"dst_pod", "api-5f7c9d8b6-abcde"},
                                               {"dst_deployment", "api"}}));
}

TEST_F(PipelineTest, LiveBytesThenExactAtClose) {
  pipe.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  pipe.OnLive({1, 1 + 100, 40}, 0);
  auto s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", api_in), 100);
  EXPECT_EQ(Value(s, "tcp_read_bytes_total", api_in), 40);
  pipe.OnLive({1, 1 + 90, 40}, 0);  // never goes back
  pipe.OnClose(Close(1, 1 + 250, 40));
  s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", api_in), 250);
  EXPECT_EQ(Value(s, "tcp_read_bytes_total", api_in), 40);
}

TEST_F(PipelineTest, HostProcessesAreCountedToo) {
  pipe.OnOpen(Open(1, 999, Direction::kOutbound, V4(127, 0, 0, 1)));
  auto s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_total", {{"host_process", "true"}, {"pod", ""}}), 1);
}

TEST_F(PipelineTest, ResetAndRefusedCountErrors) {
  pipe.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  auto c = Close(1, 1, 0);
  c.failed = true;
  c.error = TcpError::kReset;
  pipe.OnClose(c);
  TcpConnectFail f;
  f.netns_ino = 200;
  f.remote = V4(10, 0, 0, 2);
  f.error = TcpError::kConnectionRefused;
  pipe.OnConnectFail(f);
  pipe.OnConnectFail(f);
  auto s = agg.Collect();
  Labels reset = api_in;
  reset.emplace_back("error", "reset");
  EXPECT_EQ(Value(s, "inbound_tcp_errors_total", reset), 1);
  Labels failed = api_in;
  failed.emplace_back("classification", "failure");
  EXPECT_EQ(Value(s, "tcp_close_total", failed), 1);
  Labels refused = web_out;
  refused.emplace_back("error", "connection_refused");
  EXPECT_EQ(Value(s, "outbound_tcp_errors_total", refused), 2);
  EXPECT_EQ(Value(s, "tcp_open_total", web_out), 0);  // a refused connect never opened
}

TEST_F(PipelineTest, ClosesAndFailedConnectsCarryTheirErrno) {
  for (uint64_t id : {1, 2, 3}) pipe.OnOpen(Open(id, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  pipe.OnClose(Close(1, 1, 0));
  for (uint64_t id : {2, 3}) {
    auto c = Close(id, 1, 0);
    c.failed = true;
    c.error = TcpError::kReset;
    c.err = ECONNRESET;
    pipe.OnClose(c);
  }
  TcpConnectFail f;
  f.netns_ino = 200;
  f.remote = V4(10, 0, 0, 2);
  for (int err : {ECONNREFUSED, ETIMEDOUT, ETIMEDOUT}) {
    f.err = err;
    pipe.OnConnectFail(f);
  }
  auto s = agg.Collect();
  auto with = [](Labels l, const char* cls, const char* err) {
    l.emplace_back("classification", cls);
    l.emplace_back("errno", err);
    return l;
  };
  EXPECT_EQ(Value(s, "tcp_close_total", with(api_in, "success", "")), 1);
  EXPECT_EQ(Value(s, "tcp_close_total", with(api_in, "failure", "ECONNRESET")), 2);
  const Sample* h = Find(s, "tcp_connection_duration_ms", with(api_in, "failure", "ECONNRESET"));
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.count, 2u);
  // A failed connect is a close with no open and no duration.
  EXPECT_EQ(Value(s, "tcp_close_total", with(web_out, "failure", "ECONNREFUSED")), 1);
  EXPECT_EQ(Value(s, "tcp_close_total", with(web_out, "failure", "ETIMEDOUT")), 2);
  h = Find(s, "tcp_connection_duration_ms", with(web_out, "failure", "ETIMEDOUT"));
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.count, 0u);
  EXPECT_EQ(Value(s, "tcp_open_total", web_out), 0);
  EXPECT_EQ(Value(s, "tcp_open_connections", web_out), 0);
}

TEST_F(PipelineTest, OutboundTcpToAServiceCarriesItsAuthority) {
  auto svc = std::make_shared<PodMeta>();  // a ClusterIP serving port 80
  svc->ns = "shop";
  svc->service = "api";
  svc->ips = {V4(10, 96, 0, 10)};
  svc->authority_ports = {{80, 80}};
  auto api = Pod("shop", "api-5f7c9d8b6-abcde", 100, V4(10, 0, 0, 2));
  api->service = "api";  // an endpoint: its 8080 serves the Service's 80
  api->authority_ports = {{8080, 80}};
  auto web = Pod("shop", "web-0", 200, V4(10, 0, 0, 3));
  pipe.SetPods({svc, api, web});
  pipe.SetClusterDomain("corp.example");
  auto open = [&](uint64_t id, IpAddr remote, uint16_t port) {
    TcpOpen o = Open(id, 200, Direction::kOutbound, remote);
    o.remote_port = port;
    pipe.OnOpen(o);
  };
  open(1, V4(10, 96, 0, 10), 80);
  open(2, V4(10, 0, 0, 2), 8080);
  open(3, V4(10, 96, 0, 10), 81);  // not a port of the Service
  open(4, V4(10, 0, 0, 2), 9999);
  TcpConnectFail f;
  f.netns_ino = 200;
  f.remote = V4(10, 96, 0, 10);
  f.remote_port = 80;
  f.err = ECONNREFUSED;
  pipe.OnConnectFail(f);
  pipe.OnOpen(Open(5, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  auto s = agg.Collect();
  // tcp_open_total by authority, summed as a PromQL sum() would.
  auto opens = [&](const std::string& authority) {
    double n = 0;
    for (const auto& fam : s.families) {
      if (fam.name != "tcp_open_total") continue;
      for (const auto& x : fam.samples) {
        auto it = std::find_if(x.labels.begin(), x.labels.end(),
                               [](const auto& l) { return l.first == "authority"; });
        if ((it == x.labels.end() ? "" : it->second) == authority) n += x.value;
      }
    }
    return n;
  };
  const std::string authority = "api.shop.svc.corp.example:80";
  EXPECT_EQ(opens(authority), 2);  // the ClusterIP and the endpoint
  EXPECT_EQ(opens(""), 3);         // ports 81 and 9999, and the inbound connection
  Labels to_pod = web_out;
  to_pod.emplace_back("authority", authority);
  to_pod.emplace_back("dst_pod", "api-5f7c9d8b6-abcde");
  EXPECT_EQ(Value(s, "tcp_open_total", to_pod), 1);
  Labels refused = web_out;
  refused.emplace_back("authority", authority);
  refused.emplace_back("errno", "ECONNREFUSED");
  EXPECT_EQ(Value(s, "tcp_close_total", refused), 1);
}

TEST_F(PipelineTest, LostOpenEventIsRecoveredFromTheKernelsMemory) {
  auto c = Close(9, 1 + 10, 20);
  c.netns_ino = 100;
  c.direction = Direction::kInbound;
  c.open_ns = 1'000'000;
  c.base_acked = 1;
  pipe.OnClose(c);
  auto s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_total", api_in), 1);
  EXPECT_EQ(Value(s, "tcp_open_connections", api_in), 0);
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", api_in), 10);
  EXPECT_EQ(Value(s, "podtap_events_recovered_total", {{"kind", "open"}}), 1);
  EXPECT_EQ(Value(s, "podtap_events_recovered_total", {{"kind", "close"}}), 0);
}

TEST_F(PipelineTest, CloseOfASocketOlderThanTheAgentIsCountedAsUntracked) {
  auto c = Close(9, 50, 50);
  c.kernel_saw_open = false;
  pipe.OnClose(c);
  auto s = agg.Collect();
  EXPECT_EQ(Value(s, "podtap_connections_untracked_total", {{"reason", "opened_before_start"}}), 1);
  EXPECT_EQ(Value(s, "tcp_close_total", {}), -1);
}

TEST_F(PipelineTest, FullTableRefusesAndCounts) {
  Aggregator small_agg;
  TcpPipeline small(&small_agg, 1, {}, false);
  small.OnOpen(Open(1, 5, Direction::kOutbound, V4(1, 1, 1, 1)));
  small.OnOpen(Open(2, 5, Direction::kOutbound, V4(1, 1, 1, 1)));
  auto s = small_agg.Collect();
  EXPECT_EQ(Value(s, "podtap_connections_untracked_total", {{"reason", "table_full"}}), 1);
  EXPECT_EQ(Value(s, "tcp_open_total", {}), 1);
}

class PayloadPipelineTest : public PipelineTest {
 protected:
  PayloadEvent Payload(uint64_t id, DataDir dir, size_t len, uint64_t ts) {
    PayloadEvent p;
    p.conn_id = id;
    p.dir = dir;
    p.total_len = len;
    p.captured = static_cast<uint32_t>(len);
    p.ts_ns = ts;
    return p;
  }
  std::span<const uint8_t> Bytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }
  void SetUp() override {
    PipelineTest::SetUp();
    auto api = std::make_shared<PodMeta>();
    api->ns = "shop";
    api->name = "api-5f7c9d8b6-abcde";
    api->netns_ino = 100;
    live.SetPods({api});
  }
  Aggregator live_agg;
  TcpPipeline live{&live_agg, 16, {}, /*capture_payload=*/true};
};

TEST_F(PayloadPipelineTest, OpenWaitsForTheFirstBytesThenCarriesTls) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  EXPECT_EQ(Value(live_agg.Collect(), "tcp_open_total", api_in), -1);
  const std::string hello = std::string("\x16\x03\x01\x02\x00", 5) + "client hello";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, hello.size(), 2'000'000), Bytes(hello)));
  Labels tls = api_in;
  tls.emplace_back("tls", "true");
  EXPECT_EQ(Value(live_agg.Collect(), "tcp_open_total", tls), 1);
  auto verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, TcpPipeline::VerdictOp::Kind::kStop);
  live.OnClose(Close(1, 1, hello.size()));
  live.FinishCloses(31'000'000 + TcpPipeline::kCloseLingerNs);
  verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 1u);
  // The verdict is forgotten with the connection.
  EXPECT_EQ(verdicts[0].kind, TcpPipeline::VerdictOp::Kind::kForget);
  EXPECT_EQ(Value(live_agg.Collect(), "tcp_read_bytes_total", tls), hello.size());
}

TEST_F(PayloadPipelineTest, TlsPlaintextIsParsedUnderTlsTrueAndCiphertextIsNot) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  const std::string hello = std::string("\x16\x03\x01\x02\x00", 5) + "client hello";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, hello.size(), 2'000'000), Bytes(hello)));
  const std::string req = "GET /a HTTP/1.1\r\nHost: api.shop\r\n\r\n";
  const std::string resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  PayloadEvent in = Payload(1, DataDir::kRecv, req.size(), 3'000'000);
  in.tls_plaintext = true;
  PayloadEvent out = Payload(1, DataDir::kSend, resp.size(), 4'000'000);
  out.tls_plaintext = true;
  ASSERT_TRUE(live.OnPayload(in, Bytes(req)));
  // A TLS record in flight before the kernel read the STOP verdict: ignored.
  const std::string record = std::string("\x17\x03\x03\x00\x10", 5) + "0123456789abcdef";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kSend, record.size(), 3'500'000), Bytes(record)));
  ASSERT_TRUE(live.OnPayload(out, Bytes(resp)));
  auto s = live_agg.Collect();
  Labels http = api_in;
  http.emplace_back("authority", "api.shop");
  http.emplace_back("tls", "true");
  EXPECT_EQ(Value(s, "request_total", http), 1);
  http.emplace_back("status_code", "404");
  http.emplace_back("classification", "success");
  EXPECT_EQ(Value(s, "response_total", http), 1);
  EXPECT_EQ(Value(s, "podtap_connections_given_up_total", {{"protocol", "http1"}}), 0);
  auto verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 1u);  // the ciphertext's
  EXPECT_EQ(verdicts[0].conn_id, 1u);
  EXPECT_EQ(verdicts[0].kind, TcpPipeline::VerdictOp::Kind::kStop);

  // Plaintext that is not HTTP stops the plaintext capture under its own key; both verdicts are
  // forgotten at close.
  const std::string pg = std::string("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);
  live.OnOpen(Open(2, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  PayloadEvent odd = Payload(2, DataDir::kRecv, pg.size(), 5'000'000);
  odd.tls_plaintext = true;
  ASSERT_TRUE(live.OnPayload(odd, Bytes(pg)));
  verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].conn_id, 2u | TcpPipeline::kTlsVerdictBit);
  EXPECT_EQ(verdicts[0].kind, TcpPipeline::VerdictOp::Kind::kStop);
  live.OnClose(Close(1, 1, hello.size()));
  live.OnClose(Close(2, 1, 0));
  live.FinishCloses(31'000'000 + TcpPipeline::kCloseLingerNs);
  verdicts = live.TakeVerdicts();
  std::vector<uint64_t> forgotten;
  for (const auto& v : verdicts) {
    EXPECT_EQ(v.kind, TcpPipeline::VerdictOp::Kind::kForget);
    forgotten.push_back(v.conn_id);
  }
  EXPECT_EQ(forgotten, (std::vector<uint64_t>{1u, 2u | TcpPipeline::kTlsVerdictBit}));
}

TEST_F(PayloadPipelineTest, SilentConnectionIsCountedAfterTheGrace) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  live.FlushPendingOpens(1'000'000 + TcpPipeline::kOpenGraceNs - 1);
  EXPECT_EQ(Value(live_agg.Collect(), "tcp_open_total", api_in), -1);
  live.FlushPendingOpens(1'000'000 + TcpPipeline::kOpenGraceNs);
  Labels plain = api_in;
  plain.emplace_back("tls", "false");
  EXPECT_EQ(Value(live_agg.Collect(), "tcp_open_total", plain), 1);
}

// A client that half-closed (shutdown(SHUT_WR)) after its request: the reply and the server's FIN
// put its socket in CLOSE before it reads the reply, so the read's record comes after the close.
TEST_F(PayloadPipelineTest, ARecordAfterTheCloseStillCountsWhileTheConnectionLingers) {
  live.OnOpen(Open(1, 100, Direction::kOutbound, V4(10, 0, 0, 3)));
  const std::string req = "GET / HTTP/1.1\r\nHost: web\r\n\r\n";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kSend, req.size(), 2'000'000), Bytes(req)));
  live.OnClose(Close(1, 1 + req.size() + 1, resp.size() + 1));
  live.FinishCloses(31'000'000 + TcpPipeline::kCloseLingerNs - 1);
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, resp.size(), 40'000'000), Bytes(resp)));
  live.FinishCloses(31'000'000 + TcpPipeline::kCloseLingerNs);
  // Ended: a record later still is for a connection the pipeline no longer knows.
  EXPECT_FALSE(live.OnPayload(Payload(1, DataDir::kRecv, resp.size(), 50'000'000), Bytes(resp)));
  auto s = live_agg.Collect();
  Labels ok = {{"direction", "outbound"}, {"authority", "web"}, {"status_code", "200"}};
  EXPECT_EQ(Value(s, "request_total", {{"direction", "outbound"}, {"authority", "web"}}), 1);
  ok.emplace_back("classification", "success");
  EXPECT_EQ(Value(s, "response_total", ok), 1);
  Labels failed = {{"direction", "outbound"}, {"classification", "failure"}};
  EXPECT_EQ(Value(s, "response_total", failed), -1);
  EXPECT_EQ(Value(s, "tcp_close_total", {{"direction", "outbound"}}), 1);
}

TEST_F(PayloadPipelineTest, HttpExchangeIsCountedOnTheServerSide) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  const std::string req = "GET /items/1?x=2 HTTP/1.1\r\nHost: api.shop:8080\r\n\r\n";
  const std::string resp = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, req.size(), 2'000'000), Bytes(req)));
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kSend, resp.size(), 7'000'000), Bytes(resp)));
  auto s = live_agg.Collect();
  Labels http = api_in;
  http.emplace_back("authority", "api.shop:8080");
  EXPECT_EQ(Value(s, "request_total", http), 1);
  Labels failed = http;
  failed.emplace_back("status_code", "503");
  failed.emplace_back("classification", "failure");
  EXPECT_EQ(Value(s, "response_total", failed), 1);
  Labels latency = http;
  latency.emplace_back("status_code", "503");
  const Sample* h = Find(s, "response_latency_ms", latency);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->histogram.count, 1u);
  EXPECT_DOUBLE_EQ(h->histogram.sum, 5.0);
  EXPECT_EQ(Value(s, "route_request_total", {{"rt_route", "[DEFAULT]"}, {"dst", "api.shop:8080"}}),
            1);
}

TEST_F(PayloadPipelineTest, NotHttpStopsCapture) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  const std::string pg = std::string("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, pg.size(), 2'000'000), Bytes(pg)));
  auto verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, TcpPipeline::VerdictOp::Kind::kStop);
  EXPECT_EQ(Value(live_agg.Collect(), "podtap_connections_given_up_total", {{"protocol", "http1"}}),
            1);
}

TEST_F(PayloadPipelineTest, RequestsLeftWhenTheParserGivesUpAreCountedUnanswered) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  const std::string two =
      "GET /a HTTP/1.1\r\nHost: api\r\n\r\nGET /b HTTP/1.1\r\nHost: api\r\n\r\n";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, two.size(), 2'000'000), Bytes(two)));
  const std::string bad = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kSend, bad.size(), 3'000'000), Bytes(bad)));
  auto s = live_agg.Collect();
  EXPECT_EQ(Value(s, "podtap_connections_given_up_total", {{"protocol", "http1"}}), 1);
  EXPECT_EQ(Value(s, "podtap_http_requests_unanswered_total", {{"protocol", "http1"}}), 2);
}

TEST_F(PayloadPipelineTest, ShedStopsTheBusiestConnectionsAndKeepsTcpExact) {
  const std::string req = "GET /a HTTP/1.1\r\nHost: api\r\n\r\n";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  for (uint64_t id : {1, 2, 3}) live.OnOpen(Open(id, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  uint64_t ts = 2'000'000;
  // Connection 1 makes 6 exchanges, 2 makes 3, 3 makes 1: 20 records in all.
  for (auto [id, exchanges] : {std::pair<uint64_t, int>{1, 6}, {2, 3}, {3, 1}}) {
    for (int i = 0; i < exchanges; i++) {
      ASSERT_TRUE(live.OnPayload(Payload(id, DataDir::kRecv, req.size(), ts++), Bytes(req)));
      ASSERT_TRUE(live.OnPayload(Payload(id, DataDir::kSend, resp.size(), ts++), Bytes(resp)));
    }
  }
  // Connection 2 has a request in flight when it is shed.
  ASSERT_TRUE(live.OnPayload(Payload(2, DataDir::kRecv, req.size(), ts++), Bytes(req)));
  live.TakeVerdicts();
  // 0.6 of the 21 records is 13: connection 1 (12) is not enough alone, so 2 (7) goes too, not 3.
  EXPECT_EQ(live.Shed(0.6), 2u);
  auto verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 2u);
  std::set<uint64_t> stopped;
  for (const auto& v : verdicts) {
    EXPECT_EQ(v.kind, TcpPipeline::VerdictOp::Kind::kStop);
    stopped.insert(v.conn_id);
  }
  EXPECT_EQ(stopped, (std::set<uint64_t>{1, 2}));
  // Records already on their way are dropped and counted; connection 3 is still parsed.
  ASSERT_TRUE(live.OnPayload(Payload(1, DataDir::kRecv, req.size(), ts++), Bytes(req)));
  ASSERT_TRUE(live.OnPayload(Payload(3, DataDir::kRecv, req.size(), ts++), Bytes(req)));
  ASSERT_TRUE(live.OnPayload(Payload(3, DataDir::kSend, resp.size(), ts++), Bytes(resp)));
  // A new count: nothing was sent since, so a second call sheds nothing.
  EXPECT_EQ(live.Shed(0), 0u);
  for (uint64_t id : {1, 2, 3}) live.OnClose(Close(id, 1 + 100, 100));
  live.FinishCloses(31'000'000 + TcpPipeline::kCloseLingerNs);
  auto s = live_agg.Collect();
  EXPECT_EQ(Value(s, "podtap_http_shed_connections_total", {}), 2);
  EXPECT_EQ(Value(s, "podtap_http_shed_records_total", {}), 1);
  // 6 + 3 + 1 exchanges answered, connection 2's last request unanswered (not a failure), and
  // connection 3's second exchange after the shed.
  Labels http = api_in;
  http.emplace_back("authority", "api");
  EXPECT_EQ(Value(s, "request_total", http), 12);
  Labels ok = http;
  ok.emplace_back("status_code", "200");
  ok.emplace_back("classification", "success");
  EXPECT_EQ(Value(s, "response_total", ok), 11);
  EXPECT_EQ(Value(s, "podtap_http_requests_unanswered_total", {{"protocol", "http1"}}), 1);
  // TCP stays exact.
  EXPECT_EQ(Value(s, "tcp_open_total", api_in), 3);
  EXPECT_EQ(Value(s, "tcp_write_bytes_total", api_in), 300);
  // The shed connections' verdicts are forgotten at close.
  size_t forgets = 0;
  for (const auto& v : live.TakeVerdicts())
    forgets += v.kind == TcpPipeline::VerdictOp::Kind::kForget;
  EXPECT_EQ(forgets, 2u);
}

TEST_F(PayloadPipelineTest, Http2PrefaceKeepsCapturingAndForgetsTheKernelVerdictAtClose) {
  live.OnOpen(Open(1, 100, Direction::kInbound, V4(10, 0, 0, 3)));
  // The server's SETTINGS often come before the client's preface is read.
  const std::string settings("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  ASSERT_TRUE(
      live.OnPayload(Payload(1, DataDir::kSend, settings.size(), 2'000'000), Bytes(settings)));
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings;
  ASSERT_TRUE(
      live.OnPayload(Payload(1, DataDir::kRecv, preface.size(), 3'000'000), Bytes(preface)));
  // The kernel wrote the connection's HTTP/2 verdict itself; the agent must not overwrite it.
  EXPECT_TRUE(live.TakeVerdicts().empty());
  auto s = live_agg.Collect();
  EXPECT_EQ(Value(s, "podtap_connections_given_up_total", {{"protocol", "http2"}}), 0);
  EXPECT_EQ(Value(s, "podtap_connections_given_up_total", {{"protocol", "http1"}}), 0);
  live.OnClose(Close(1, 1, preface.size()));
  live.FinishCloses(31'000'000 + TcpPipeline::kCloseLingerNs);
  auto verdicts = live.TakeVerdicts();
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, TcpPipeline::VerdictOp::Kind::kForget);
}

TEST_F(PayloadPipelineTest, PayloadOfAnUnknownConnectionAsksForARetry) {
  const std::string req = "GET / HTTP/1.1\r\n\r\n";
  EXPECT_FALSE(live.OnPayload(Payload(9, DataDir::kRecv, req.size(), 1), Bytes(req)));
}

// Pod churn (CronJobs, rollouts): 10,000 pods come, talk and go, in waves as
// pod lists change (ChurnNode). Once they are gone, their connections closed,
// their idle series expired and the query window past them, the interned label
// sets and endpoint pairs and the series are back to exactly what they were
// before, and the pods that stayed counted exactly what they did.
struct Level {
  size_t label_sets, endpoint_pairs;
  std::array<size_t, kSeriesGroupCount> series;
  bool operator==(const Level&) const = default;
};

Level LevelOf(const ChurnNode& n) {
  return {n.agg.LabelSetCount(),
          n.rec.endpoints().size(),
          {n.agg.SeriesCount(SeriesGroup::kTcp), n.agg.SeriesCount(SeriesGroup::kHttp),
           n.agg.SeriesCount(SeriesGroup::kRoute)}};
}

TEST(ChurnTest, TenThousandPodsComeAndGoAndLeaveNothingBehind) {
  ChurnNode node;
  node.Settle();
  const Level before = LevelOf(node);
  // web-0 -> api-0 and api-0 <- web-0 (its series, and the open connection's
  // pair), and the overflow series' label set.
  EXPECT_EQ(before.label_sets, 3u);
  EXPECT_EQ(before.endpoint_pairs, 1u);

  for (int wave = 0; wave < ChurnNode::kPods / ChurnNode::kWave; wave++) {
    node.WaveComes();
    if (wave == 0) {
      // Each job holds three label sets (its own inbound; its own to api-0;
      // web-0's to it) and four endpoint pairs (both ends of both calls).
      EXPECT_EQ(LevelOf(node).label_sets, before.label_sets + 3 * ChurnNode::kWave);
      EXPECT_EQ(LevelOf(node).endpoint_pairs, before.endpoint_pairs + 4 * ChurnNode::kWave);
    }
    node.WaveGoes();
  }
  // web-0 calls api-0 once more on the connection that stayed open.
  node.Call(3, 2, Direction::kOutbound, node.api->ips[0], /*keep_open=*/true, /*opened=*/true);
  node.now += ChurnNode::kPastWindow;
  node.Housekeeping();

  EXPECT_EQ(node.unmatched(), 0u);
  EXPECT_EQ(LevelOf(node), before);
  EXPECT_EQ(node.pipe.tracked(), 1u);
  const Snapshot s = node.agg.Collect();
  EXPECT_EQ(Value(s, "podtap_label_sets", {}), static_cast<double>(before.label_sets));
  EXPECT_EQ(Value(s, "podtap_series_dropped_total", {{"family", "http"}}), 0);
  const Labels web_to_api = {{"pod", "web-0"}, {"direction", "outbound"}, {"dst_pod", "api-0"}};
  EXPECT_EQ(Value(s, "request_total", web_to_api), 3);
  EXPECT_EQ(Value(s, "tcp_open_total", web_to_api), 2);
  EXPECT_EQ(Value(s, "tcp_open_connections", web_to_api), 1);
  // api-0's inbound series name no peer: every job's call is in them.
  const Labels api_in = {{"pod", "api-0"}, {"direction", "inbound"}};
  EXPECT_EQ(Value(s, "request_total", api_in), 1 + ChurnNode::kPods);
  EXPECT_EQ(Value(s, "tcp_open_total", api_in), 1 + ChurnNode::kPods);
  EXPECT_EQ(Value(s, "tcp_close_total", api_in), 1 + ChurnNode::kPods);
  EXPECT_EQ(Find(s, "tcp_open_total", {{"namespace", "batch"}}), nullptr);
  EXPECT_EQ(Find(s, "tcp_open_total", {{"dst_namespace", "batch"}}), nullptr);
  Snapshot q;
  AppendQueryMetrics(node.rec, node.taps, &q);
  EXPECT_EQ(Value(q, "podtap_query_endpoint_pairs", {}),
            static_cast<double>(before.endpoint_pairs));
}

}  // namespace
}  // namespace podtap
