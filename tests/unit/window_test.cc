// The query service's time window: buckets, expiry, quantiles, Top's bound,
// endpoint naming, and the pipeline feeding it.
#include "agent/query/window.h"

#include <gtest/gtest.h>

#include "agent/conn/tcp_pipeline.h"
#include "agent/query/query_recorder.h"

namespace podtap {
namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kT0 = 1000 * kSec;  // a bucket boundary (5 s buckets)

// A table holding the one endpoint pair the window tests count: the first
// interned, so its id is 0, X()'s.
struct OnePair {
  EndpointTable table;
  EndpointTable::Ref pair = table.Intern(nullptr, nullptr);
};

Exchange X(uint64_t ts, bool failed = false, double ms = 5, std::string_view path = "/a") {
  Exchange x;
  x.endpoints = 0;
  x.direction = Direction::kInbound;
  x.method = "GET";
  x.authority = "api";
  x.path = path;
  x.route = "[DEFAULT]";
  x.status = failed ? 500 : 200;
  x.failed = failed;
  x.latency_ms = ms;
  x.ts_ns = ts;
  return x;
}

TEST(Window, LatenciesOfTheWindowMergeAcrossItsBuckets) {
  OnePair p;
  Window w(&p.table);
  // 0.3 ms and 40 ms in one 5 s bucket, 2 ms in the next.
  w.OnExchange(X(kT0 + 1 * kSec, false, 0.3));
  w.OnExchange(X(kT0 + 2 * kSec, false, 40));
  w.OnExchange(X(kT0 + 6 * kSec, false, 2));
  const LatencyHistogram l = w.Sum(kT0 + 7 * kSec, 60 * kSec).at({0, Direction::kInbound}).latency;
  EXPECT_EQ(l.count(), 3u);
  // Measured, not interpolated inside Linkerd's 0-1 ms bucket: the median is
  // the bucket of 2 ms, the lowest that of 0.3 ms.
  EXPECT_EQ(LatencyHistogram::IndexOf(static_cast<uint64_t>(l.QuantileMs(0.5) * 1e6)),
            LatencyHistogram::IndexOf(2'000'000));
  EXPECT_EQ(LatencyHistogram::IndexOf(static_cast<uint64_t>(l.QuantileMs(0) * 1e6)),
            LatencyHistogram::IndexOf(300'000));
  const auto top = w.SumTop(kT0 + 7 * kSec, 60 * kSec);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top.begin()->second.latency.buckets(), l.buckets());
}

TEST(Window, SumsTheBucketsOfTheWindowOnly) {
  OnePair p;
  Window w(&p.table);
  w.OnExchange(X(kT0 + 1 * kSec));
  w.OnExchange(X(kT0 + 2 * kSec, true));
  w.OnExchange(X(kT0 + 61 * kSec));
  w.OnBytes(0, Direction::kInbound, 100, 7, kT0 + 61 * kSec);
  // At T0+62 s a 60 s window starts at T0+2 s, in the first bucket: all of it.
  auto all = w.Sum(kT0 + 62 * kSec, 60 * kSec);
  ASSERT_EQ(all.size(), 1u);
  const Window::Traffic& t = all.at({0, Direction::kInbound});
  EXPECT_EQ(t.requests, 3u);
  EXPECT_EQ(t.successes, 2u);
  EXPECT_EQ(t.read_bytes, 100u);
  EXPECT_EQ(t.write_bytes, 7u);
  // At T0+66 s it starts at T0+6 s: the first bucket [T0, T0+5) is out.
  auto later = w.Sum(kT0 + 66 * kSec, 60 * kSec);
  EXPECT_EQ(later.at({0, Direction::kInbound}).requests, 1u);
  // A 10 s window sees only the last exchange.
  EXPECT_EQ(w.Sum(kT0 + 62 * kSec, 10 * kSec).at({0, Direction::kInbound}).requests, 1u);
}

TEST(Window, ReusedBucketsForgetWhatTheyHeld) {
  OnePair p;
  Window w(&p.table);
  const Window::TrafficKey key{0, Direction::kInbound};
  w.OnExchange(X(kT0));
  // One ring of 5 s buckets later the same slot holds a new bucket: a minute's window reads it
  // only.
  uint64_t later = kT0 + Window::kBucketNs * Window::kBuckets;
  w.OnExchange(X(later));
  EXPECT_EQ(w.Sum(later, 60 * kSec).at(key).requests, 1u);
  // Ten minutes reach back to the first through the 1 min buckets.
  EXPECT_EQ(w.Sum(later, Window::kMaxWindowNs).at(key).requests, 2u);
  // One ring of 1 min buckets later, the first one's slot holds the newest minute.
  uint64_t much_later = kT0 + Window::kCoarseNs * Window::kCoarseBuckets;
  w.OnExchange(X(much_later));
  EXPECT_EQ(w.Sum(much_later, Window::kMaxWindowNs).at(key).requests, 1u);
  // Events older than a ring are not counted into a newer bucket of it.
  w.OnExchange(X(kT0 + kSec));
  EXPECT_EQ(w.Sum(much_later, Window::kMaxWindowNs).at(key).requests, 1u);
  EXPECT_EQ(w.Sum(much_later, 60 * kSec).at(key).requests, 1u);
  // Nothing at all in an empty window.
  EXPECT_TRUE(w.Sum(much_later + 700 * kSec, 60 * kSec).empty());
}

TEST(Window, LongWindowsStartAtTheNearestMinute) {
  OnePair p;
  Window w(&p.table);
  const Window::TrafficKey key{0, Direction::kInbound};
  const uint64_t base = 100 * Window::kCoarseNs;  // a minute boundary
  for (uint64_t at : {10, 70, 130, 250}) w.OnExchange(X(base + at * kSec));
  const uint64_t now = base + 300 * kSec;
  // 5 min: from `base`, all four. 4 min: from base+60 s, three.
  EXPECT_EQ(w.Sum(now, 300 * kSec).at(key).requests, 4u);
  EXPECT_EQ(Window::SpanNs(now, 300 * kSec), 300 * kSec);
  EXPECT_EQ(w.Sum(now, 240 * kSec).at(key).requests, 3u);
  // 4 min 40 s starts at base+20 s: from `base`, the nearer minute; 4 min 20 s from base+60 s.
  EXPECT_EQ(w.Sum(now, 280 * kSec).at(key).requests, 4u);
  EXPECT_EQ(Window::SpanNs(now, 280 * kSec), 300 * kSec);
  EXPECT_EQ(w.Sum(now, 260 * kSec).at(key).requests, 3u);
  EXPECT_EQ(Window::SpanNs(now, 260 * kSec), 240 * kSec);
  // Up to 2 min: 5 s buckets only, [base+180, now]: one; and the span is the window's.
  EXPECT_EQ(w.Sum(now, 120 * kSec).at(key).requests, 1u);
  EXPECT_EQ(Window::SpanNs(now, 120 * kSec), 120 * kSec);
  EXPECT_TRUE(w.Sum(now, 10 * kSec).empty());
}

TEST(Window, TopKeepsKindsUpToItsBoundAndCountsTheRest) {
  OnePair p;
  Window w(&p.table, 2);
  w.OnExchange(X(kT0, false, 5, "/a"));
  w.OnExchange(X(kT0, true, 5, "/b"));
  w.OnExchange(X(kT0, false, 5, "/a"));
  w.OnExchange(X(kT0, false, 5, "/c"));  // a third kind: dropped from Top
  auto top = w.SumTop(kT0 + kSec, 60 * kSec);
  ASSERT_EQ(top.size(), 2u);
  Window::TopKey a{0, Direction::kInbound, "GET", "api", "/a"};
  Window::TopKey b{0, Direction::kInbound, "GET", "api", "/b"};
  EXPECT_EQ(top.at(a).requests, 2u);
  EXPECT_EQ(top.at(b).failures, 1u);
  EXPECT_EQ(top.at(a).route, "[DEFAULT]");
  EXPECT_EQ(w.top_dropped(), 1u);
  EXPECT_EQ(w.TopDropped(kT0 + kSec, 60 * kSec), 1u);
  // Stat still counts every exchange.
  EXPECT_EQ(w.Sum(kT0 + kSec, 60 * kSec).at({0, Direction::kInbound}).requests, 4u);
}

// A kind counted again in the same 5 s bucket reaches its 1 min counts
// through the 5 s kind (no second lookup): the minute's sums must equal the
// 5 s buckets', for kinds made in either order, after the minute's bucket is
// emptied and made anew, and for a kind only the minute had room for.
TEST(Window, TheMinuteCountsWhatItsFiveSecondBucketsCount) {
  OnePair p;
  Window w(&p.table, 2);
  const uint64_t base = 100 * Window::kCoarseNs;  // a minute boundary
  // Past the 2-minute ring, so the long window sums the 1 min buckets only.
  const uint64_t later = base + 5 * Window::kCoarseNs;
  const Window::TopKey a{0, Direction::kInbound, "GET", "api", "/a"};
  const Window::TopKey b{0, Direction::kInbound, "GET", "api", "/b"};
  for (int i = 0; i < 3; i++) w.OnExchange(X(base + kSec, i == 1, 5, "/a"));
  w.OnExchange(X(base + 2 * kSec, false, 5, "/b"));
  w.OnExchange(X(base + 3 * kSec, true, 5, "/a"));
  w.OnExchange(X(base + 7 * kSec, false, 5, "/b"));  // the next 5 s bucket
  w.OnExchange(X(base + 8 * kSec, false, 5, "/b"));
  auto fine = w.SumTop(base + 9 * kSec, 60 * kSec);
  auto coarse = w.SumTop(later, Window::kMaxWindowNs);
  for (const auto* top : {&fine, &coarse}) {
    ASSERT_EQ(top->size(), 2u);
    EXPECT_EQ(top->at(a).requests, 4u);
    EXPECT_EQ(top->at(a).failures, 2u);
    EXPECT_EQ(top->at(a).latency.count(), 4u);
    EXPECT_EQ(top->at(b).requests, 3u);
  }
  EXPECT_EQ(w.Sum(later, Window::kMaxWindowNs).at({0, Direction::kInbound}).requests, 7u);
  // Everything aged out, then the same minute counted again: the 5 s kinds
  // are new and find the minute's new bucket, not the emptied one.
  w.Age(base + 20 * Window::kCoarseNs);
  w.OnExchange(X(base + kSec, false, 5, "/a"));
  w.OnExchange(X(base + kSec, false, 5, "/a"));
  EXPECT_EQ(w.SumTop(base + 20 * Window::kCoarseNs, Window::kMaxWindowNs).size(), 0u);
  auto again = w.SumTop(later, Window::kMaxWindowNs);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again.at(a).requests, 2u);
  // A third kind has no room in the 5 s bucket (2 kinds) nor the minute's.
  w.OnExchange(X(base + 2 * kSec, false, 5, "/b"));
  w.OnExchange(X(base + 2 * kSec, false, 5, "/c"));
  EXPECT_EQ(w.SumTop(later, Window::kMaxWindowNs).size(), 2u);
  EXPECT_EQ(w.Sum(later, Window::kMaxWindowNs).at({0, Direction::kInbound}).requests, 4u);
}

std::shared_ptr<PodMeta> Pod(std::string name, std::string owner_kind, std::string owner) {
  auto p = std::make_shared<PodMeta>();
  p->ns = "shop";
  p->name = std::move(name);
  p->owner_kind = std::move(owner_kind);
  p->owner_name = std::move(owner);
  return p;
}

TEST(EndpointOf, NamesTheWorkloadAsLinkerdDoes) {
  auto api = Pod("api-5f7c9d8b6-abcde", "ReplicaSet", "api-5f7c9d8b6");
  api->labels = {{"pod-template-hash", "5f7c9d8b6"}};
  api->netns_ino = 7;
  Endpoint e = EndpointOf(api.get());
  EXPECT_EQ(e.workload_kind, "deployment");
  EXPECT_EQ(e.workload, "api");
  EXPECT_TRUE(e.on_node);
  // A ReplicaSet not named after a template hash is only a ReplicaSet.
  Endpoint rs = EndpointOf(Pod("x-1", "ReplicaSet", "x").get());
  EXPECT_EQ(rs.workload_kind, "replicaset");
  EXPECT_FALSE(rs.on_node);
  EXPECT_EQ(EndpointOf(Pod("db-0", "StatefulSet", "db").get()).workload_kind, "statefulset");
  EXPECT_EQ(EndpointOf(Pod("j", "Job", "migrate").get()).workload, "migrate");
  EXPECT_EQ(EndpointOf(nullptr), Endpoint{});
}

TEST(EndpointTable, InternsPairsOnceAndSurvivesNewPodLists) {
  EndpointTable t;
  auto a = Pod("a", "", "");
  auto b = Pod("b", "", "");
  const auto ab = t.Intern(a.get(), b.get());
  const auto id = ab.id();
  EXPECT_EQ(t.Intern(a.get(), b.get()).id(), id);
  EXPECT_NE(t.Intern(b.get(), a.get()).id(), id);
  EXPECT_EQ(t.Get(id).local.pod, "a");
  EXPECT_EQ(t.Get(id).remote.pod, "b");
  t.PodsChanged();
  auto a2 = Pod("a", "", "");  // the same pod in a new list
  EXPECT_EQ(t.Intern(a2.get(), b.get()).id(), id);
  EXPECT_EQ(t.size(), 1u);  // (b, a) was held by the cache alone
  // A socket of no pod is a host process; a remote of no pod is not.
  const EndpointPair& host = t.Get(t.Intern(nullptr, b.get()));
  EXPECT_TRUE(host.local.host);
  EXPECT_FALSE(t.Get(id).local.host);
  EXPECT_FALSE(t.Get(t.Intern(a.get(), nullptr)).remote.host);
}

TEST(EndpointTable, PairsAreFreedWithTheirLastHolder) {
  EndpointTable t;
  auto a = Pod("a", "", "");
  auto b = Pod("b", "", "");
  EndpointTable::Id id = 0;
  {
    EndpointTable::Ref conn = t.Intern(a.get(), b.get());
    id = conn.id();
    t.PodsChanged();  // the cache lets go; the connection still holds it
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.Get(id).local.pod, "a");
  }
  EXPECT_EQ(t.size(), 0u);
  // The same pods again: the same pair, under a new id.
  EndpointTable::Ref again = t.Intern(a.get(), b.get());
  EXPECT_NE(again.id(), id);
  EXPECT_EQ(t.Get(again).remote.pod, "b");
}

TEST(Window, BucketsHoldTheirPairsUntilTheyAgeOut) {
  EndpointTable t;
  auto a = Pod("a", "", "");
  Window w(&t);
  {
    EndpointTable::Ref conn = t.Intern(a.get(), nullptr);
    Exchange x = X(kT0);
    x.endpoints = conn.id();
    w.OnExchange(x);
    w.OnBytes(conn.id(), Direction::kInbound, 10, 20, kT0 + 3 * kSec);
    t.PodsChanged();
  }  // closed: only the window holds the pair now
  EXPECT_EQ(t.size(), 1u);
  // Ageing within the window changes nothing, in sums or pairs.
  const uint64_t minute = kT0 + 60 * kSec;
  w.Age(minute);
  EXPECT_EQ(t.size(), 1u);
  const auto sums = w.Sum(minute, 60 * kSec);
  ASSERT_EQ(sums.size(), 1u);
  EXPECT_EQ(sums.begin()->second.requests, 1u);
  EXPECT_EQ(sums.begin()->second.write_bytes, 20u);
  EXPECT_EQ(t.Get(sums.begin()->first.first).local.pod, "a");
  EXPECT_EQ(w.Sum(minute, Window::kMaxWindowNs).begin()->second.requests, 1u);
  // Past the 5 s ring the fine buckets let go, and past the 1 min ring (12
  // minutes) the coarse ones: the pair is freed.
  const uint64_t later = kT0 + Window::kCoarseNs * Window::kCoarseBuckets;
  w.Age(later - Window::kCoarseNs);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_TRUE(w.Sum(later - Window::kCoarseNs, 120 * kSec).empty());
  w.Age(later);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_TRUE(w.Sum(later, Window::kMaxWindowNs).empty());
}

IpAddr V4(uint8_t last) {
  IpAddr ip;
  ip.bytes = {10, 0, 0, last};
  return ip;
}

// The pipeline names both ends of inbound connections too, and reports each
// completed exchange and every byte it counts.
TEST(QueryRecorderFeed, PipelineReportsEndpointsExchangesAndBytes) {
  Aggregator agg;
  TapHub taps;
  QueryRecorder rec(&taps);
  TcpPipeline pipe(&agg, 100, {}, true);
  pipe.SetObserver(&rec);
  auto api = Pod("api-0", "StatefulSet", "api");
  api->netns_ino = 100;
  api->ips = {V4(2)};
  auto web = Pod("web-0", "StatefulSet", "web");
  web->ips = {V4(3)};
  pipe.SetPods({api, web});

  TcpOpen open;
  open.conn_id = 1;
  open.open_ns = kT0;
  open.netns_ino = 100;
  open.direction = Direction::kInbound;
  open.local = V4(2);
  open.remote = V4(3);
  open.local_port = 80;
  open.remote_port = 40000;
  pipe.OnOpen(open);
  std::string req = "GET /x?secret=1 HTTP/1.1\r\nHost: api\r\n\r\n";
  std::string rsp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  PayloadEvent in{1, kT0 + kSec, DataDir::kRecv, req.size(), 0, uint32_t(req.size())};
  PayloadEvent out{1, kT0 + kSec + 3'000'000, DataDir::kSend, rsp.size(), 0, uint32_t(rsp.size())};
  ASSERT_TRUE(pipe.OnPayload(in, {reinterpret_cast<const uint8_t*>(req.data()), req.size()}));
  ASSERT_TRUE(pipe.OnPayload(out, {reinterpret_cast<const uint8_t*>(rsp.data()), rsp.size()}));

  int conns = 0;
  pipe.conns().ForEach([&](const Conn& c) {
    conns++;
    EXPECT_EQ(rec.endpoints().Get(c.endpoints.id()).local.pod, "api-0");
    EXPECT_EQ(rec.endpoints().Get(c.endpoints.id()).remote.pod, "web-0");
    EXPECT_EQ(c.remote_port, 40000);
  });
  EXPECT_EQ(conns, 1);

  TcpClose close;
  close.conn_id = 1;
  close.ts_ns = kT0 + 2 * kSec;
  close.received_total = req.size();
  close.acked_total = rsp.size();
  pipe.OnClose(close);
  auto sums = rec.window().Sum(kT0 + 3 * kSec, 60 * kSec);
  ASSERT_EQ(sums.size(), 1u);
  const Window::Traffic& t = sums.begin()->second;
  EXPECT_EQ(rec.endpoints().Get(sums.begin()->first.first).remote.workload, "web");
  EXPECT_EQ(t.requests, 1u);
  EXPECT_EQ(t.successes, 1u);
  EXPECT_EQ(t.read_bytes, req.size());
  EXPECT_EQ(t.write_bytes, rsp.size());
  auto top = rec.window().SumTop(kT0 + 3 * kSec, 60 * kSec);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top.begin()->first.path, "/x");  // no query string
}

}  // namespace
}  // namespace podtap
