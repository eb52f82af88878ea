// Tests the aggregator's bounds: the per-family series cap and its overflow
// series, label value cleaning, and idle-series expiry.
#include "agent/metrics/aggregator.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "agent/conn/http_conn.h"
#include "agent/protocols/routes.h"
#include "tests/unit/snapshot_util.h"

namespace podtap {
namespace {

using testing::Find;
using testing::Value;
using Clock = Aggregator::Clock;
using namespace std::chrono_literals;

Labels Pod(const std::string& name) { return {{"namespace", "shop"}, {"pod", name}}; }

bool NoPods(const Labels&) { return false; }
bool AllPods(const Labels&) { return true; }

TEST(HistogramTest, WholeMillisecondsAndInclusiveBoundsAsLinkerdCountsThem) {
  Histogram h;
  // 1 and 1.9 ms are 1 ms (le="1"); 10.7 ms is 10 (le="10"); 10.0 stays in
  // le="10"; 50.001 is 50 (le="50"); 10000.5 is 10000 (le="10000"); 0.4 is 0.
  for (double ms : {0.4, 1.0, 1.9, 10.0, 10.7, 50.001, 51.0, 10000.5, 10001.0}) h.Observe(ms);
  const HistogramData d = h.ToData();
  ASSERT_EQ(d.cumulative_counts.size(), kLatencyBoundsMs.size() + 1);
  // le:                      1  10  50 100 ... 5000 10000 +Inf
  EXPECT_EQ(d.cumulative_counts, (std::vector<uint64_t>{3, 5, 6, 7, 7, 7, 7, 7, 7, 7, 8, 9}));
  EXPECT_DOUBLE_EQ(d.sum, 0 + 1 + 1 + 10 + 10 + 50 + 51 + 10000 + 10001);
  EXPECT_EQ(d.count, 9u);
}

TEST(AggregatorSelfTest, TlsLibrariesByState) {
  Aggregator agg;
  agg.self().tls_libraries = 2;
  agg.self().tls_attach_errors = 1;
  agg.self().tls_without_openssl = 63;
  agg.self().tls_go_not_covered = 5;
  agg.self().tls_go_attached = 3;
  agg.self().tls_unreadable = 4;
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "podtap_tls_libraries", {{"state", "attached"}}), 2);
  EXPECT_EQ(Value(s, "podtap_tls_libraries", {{"state", "failed"}}), 1);
  EXPECT_EQ(Value(s, "podtap_tls_libraries", {{"state", "without_openssl"}}), 63);
  EXPECT_EQ(Value(s, "podtap_tls_libraries", {{"state", "go"}}), 3);
  EXPECT_EQ(Value(s, "podtap_tls_libraries", {{"state", "go_not_covered"}}), 5);
  EXPECT_EQ(Value(s, "podtap_tls_libraries", {{"state", "unreadable"}}), 4);
}

TEST(AggregatorCapTest, NewLabelSetsPastTheCapGoToOneOverflowSeries) {
  Aggregator agg({.max_series_per_family = 2});
  const auto held = agg.Intern(Pod("api-0"));
  const auto id = held.id();
  agg.Http(id, Direction::kInbound, "a.example")->requests++;
  agg.Http(id, Direction::kInbound, "b.example")->requests++;
  // A client inventing Host headers: every new one lands in the overflow series.
  for (int i = 0; i < 1000; i++) {
    agg.Http(id, Direction::kInbound, "evil-" + std::to_string(i))->requests++;
  }
  // Known label sets keep their own series past the cap.
  agg.Http(id, Direction::kInbound, "a.example")->requests++;

  EXPECT_EQ(agg.SeriesCount(SeriesGroup::kHttp), 3u);  // two + overflow
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "request_total", {{"authority", "a.example"}}), 2);
  EXPECT_EQ(Value(s, "request_total", {{"podtap_overflow", "true"}, {"direction", "inbound"}}),
            1000);
  EXPECT_EQ(Value(s, "podtap_series_dropped_total", {{"family", "http"}}), 1000);
  EXPECT_EQ(Value(s, "podtap_series_dropped_total", {{"family", "tcp"}}), 0);
  EXPECT_EQ(Value(s, "podtap_series", {{"family", "request_total"}}), 3);
}

TEST(AggregatorCapTest, EachGroupHasItsOwnCap) {
  Aggregator agg({.max_series_per_family = 1});
  const auto a_held = agg.Intern(Pod("a"));
  const auto b_held = agg.Intern(Pod("b"));
  const auto a = a_held.id();
  const auto b = b_held.id();
  agg.Transport(a, Direction::kInbound, false)->open_total++;
  agg.Route(a, Direction::kInbound, "x", "[DEFAULT]")->requests++;
  TransportSeries* over = agg.Transport(b, Direction::kInbound, false);
  EXPECT_EQ(over, agg.Transport(b, Direction::kInbound, true));  // same overflow series
  over->open_total += 2;
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "tcp_open_total", {{"podtap_overflow", "true"}}), 2);
  EXPECT_EQ(Value(s, "tcp_open_total", {{"pod", "a"}}), 1);
  EXPECT_EQ(Value(s, "route_request_total", {{"pod", "a"}}), 1);
  EXPECT_EQ(Value(s, "podtap_series_dropped_total", {{"family", "tcp"}}), 2);
  EXPECT_EQ(Value(s, "podtap_series_dropped_total", {{"family", "route"}}), 0);
}

TEST(AggregatorLabelTest, ValuesAreCutAtACharacterBoundaryAndMadeValidUtf8) {
  EXPECT_EQ(CleanLabelValue("plain", 16), "plain");
  EXPECT_EQ(CleanLabelValue(std::string(300, 'x'), 256), std::string(256, 'x'));
  // "é" is two bytes; cutting at 4 would split the second one.
  EXPECT_EQ(CleanLabelValue("aéé", 4), "aé");
  EXPECT_EQ(CleanLabelValue("a\xff"
                            "b",
                            16),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(CleanLabelValue("\xC0\xAF", 16), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(CleanLabelValue("\xED\xA0\x80", 16),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");                       // a UTF-16 surrogate
  EXPECT_EQ(CleanLabelValue("\xF0\x9F\x98\x80", 16), "\xF0\x9F\x98\x80");  // an emoji stays

  Aggregator agg({.max_label_value_bytes = 16});
  const auto held = agg.Intern({{"pod", std::string(40, 'p')}});
  const auto id = held.id();
  agg.Http(id, Direction::kInbound, std::string(100, 'h') + "\xff")->requests++;
  agg.Http(id, Direction::kInbound, std::string(100, 'h'))->requests++;  // same after the cut
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "request_total", {{"authority", std::string(16, 'h')}}), 2);
  EXPECT_NE(Find(s, "request_total", {{"pod", std::string(16, 'p')}}), nullptr);
}

class AggregatorExpiryTest : public ::testing::Test {
 protected:
  Aggregator agg;
  Aggregator::LabelRef held = agg.Intern(Pod("api-0"));
  Aggregator::LabelSetId id = held.id();
  Clock::time_point t0 = Clock::now();
};

TEST_F(AggregatorExpiryTest, IdleScrapedSeriesOfAGonePodExpire) {
  agg.Http(id, Direction::kInbound, "a")->requests++;
  agg.Collect();
  EXPECT_EQ(agg.Expire(t0, 5min, NoPods), 0u);          // first sweep sees the change
  EXPECT_EQ(agg.Expire(t0 + 4min, 5min, NoPods), 0u);   // not idle long enough
  EXPECT_EQ(agg.Expire(t0 + 5min, 5min, AllPods), 0u);  // its pod still exists
  EXPECT_EQ(agg.Expire(t0 + 5min, 5min, NoPods), 1u);
  EXPECT_EQ(agg.SeriesCount(SeriesGroup::kHttp), 0u);
  EXPECT_EQ(Find(agg.Collect(), "request_total", {{"authority", "a"}}), nullptr);
}

TEST_F(AggregatorExpiryTest, ASeriesIsKeptUntilScrapedAfterItsLastChange) {
  HttpSeries* s = agg.Http(id, Direction::kInbound, "a");
  s->requests++;
  agg.Expire(t0, 5min, NoPods);
  EXPECT_EQ(agg.Expire(t0 + 10min, 5min, NoPods), 0u);  // never collected
  agg.Collect();
  EXPECT_EQ(agg.Expire(t0 + 10min, 5min, NoPods), 1u);
}

TEST_F(AggregatorExpiryTest, AChangeRestartsTheRetention) {
  HttpSeries* s = agg.Http(id, Direction::kInbound, "a");
  s->requests++;
  agg.Collect();
  agg.Expire(t0, 5min, NoPods);
  s->requests++;  // counted at t0 + 4min
  agg.Expire(t0 + 4min, 5min, NoPods);
  agg.Collect();
  EXPECT_EQ(agg.Expire(t0 + 6min, 5min, NoPods), 0u);
  EXPECT_EQ(agg.Expire(t0 + 9min, 5min, NoPods), 1u);
}

// A connection keeps the series of its last exchange; expiry removing them
// must make it look them up again, not count into freed memory.
TEST_F(AggregatorExpiryTest, AConnectionCountsIntoFreshSeriesAfterItsOldOnesExpired) {
  RouteTable routes;
  Http1ParserPool pool;
  HttpShared shared{&agg, &routes, &pool};
  HttpConn conn(&shared, id, Direction::kInbound);
  auto exchange = [&](uint64_t ts) {
    auto bytes = [](std::string_view s) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    };
    std::string_view req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    std::string_view resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    conn.Feed(DataDir::kRecv, bytes(req), req.size(), ts);
    conn.Feed(DataDir::kSend, bytes(resp), resp.size(), ts + 1000);
  };
  exchange(1);
  EXPECT_EQ(Value(agg.Collect(), "request_total", {{"authority", "a"}}), 1);
  agg.Expire(t0, 5min, NoPods);
  const uint64_t before = agg.generation();
  EXPECT_EQ(agg.Expire(t0 + 5min, 5min, NoPods), 2u);  // the authority's and the route's
  EXPECT_NE(agg.generation(), before);
  exchange(2);
  exchange(3);
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "request_total", {{"authority", "a"}}), 2);
  EXPECT_EQ(Value(s, "response_total", {{"authority", "a"}, {"status_code", "200"}}), 2);
}

// Between messages a connection holds no parser: many connections take turns with one, and
// each counts its own exchanges.
TEST_F(AggregatorExpiryTest, ConnectionsBetweenMessagesLendTheirParserBack) {
  RouteTable routes;
  Http1ParserPool pool;
  HttpShared shared{&agg, &routes, &pool};
  HttpConn a(&shared, id, Direction::kInbound);
  HttpConn b(&shared, id, Direction::kInbound);
  auto bytes = [](std::string_view s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  std::string_view req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  std::string_view head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
  a.Feed(DataDir::kRecv, bytes(req), req.size(), 1);
  b.Feed(DataDir::kRecv, bytes(req), req.size(), 2);
  EXPECT_EQ(pool.kept(), 0u);  // both wait for a response
  a.Feed(DataDir::kSend, bytes(head), head.size(), 3);
  a.Feed(DataDir::kSend, bytes("ok"), 2, 4);
  EXPECT_EQ(pool.kept(), 1u);
  EXPECT_STREQ(a.protocol(), "http1");
  EXPECT_FALSE(a.gave_up());
  b.Feed(DataDir::kSend, bytes(head), head.size(), 5);
  b.Feed(DataDir::kSend, bytes("ok"), 2, 6);
  EXPECT_EQ(pool.kept(), 2u);
  for (int i = 0; i < 3; ++i) {
    a.Feed(DataDir::kRecv, bytes(req), req.size(), 10 + i);
    EXPECT_EQ(pool.kept(), 1u);
    a.Feed(DataDir::kSend, bytes(head), head.size(), 10 + i);
    a.Feed(DataDir::kSend, bytes("ok"), 2, 10 + i);
  }
  a.OnClose(20);
  b.OnClose(20);
  EXPECT_EQ(pool.kept(), 2u);
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "request_total", {{"authority", "a"}}), 5);
  EXPECT_EQ(Value(s, "response_total", {{"authority", "a"}, {"status_code", "200"}}), 5);
}

TEST_F(AggregatorExpiryTest, ATransportSeriesWithOpenConnectionsIsNeverExpired) {
  // A connection holds this pointer from its open to its close.
  TransportSeries* s = agg.Transport(id, Direction::kInbound, false);
  s->open_total++;
  s->open_now++;
  agg.Collect();
  agg.Expire(t0, 1s, NoPods);
  EXPECT_EQ(agg.Expire(t0 + 1h, 1s, NoPods), 0u);
  s->open_now--;  // the close
  s->Close(Classification::kSuccess, 0).total++;
  agg.Expire(t0 + 1h, 1s, NoPods);
  agg.Collect();
  EXPECT_EQ(agg.Expire(t0 + 2h, 1s, NoPods), 1u);
}

TEST_F(AggregatorExpiryTest, OverflowSeriesNeverExpireAndExpiryFreesRoomUnderTheCap) {
  Aggregator capped({.max_series_per_family = 1});
  const auto a_held = capped.Intern(Pod("a"));
  const auto b_held = capped.Intern(Pod("b"));
  const auto a = a_held.id();
  const auto b = b_held.id();
  capped.Http(a, Direction::kInbound, "x")->requests++;
  capped.Http(b, Direction::kInbound, "x")->requests++;  // overflow
  capped.Collect();
  capped.Expire(t0, 1s, NoPods);
  EXPECT_EQ(capped.Expire(t0 + 1min, 1s, NoPods), 1u);   // a's series, not the overflow one
  capped.Http(b, Direction::kInbound, "x")->requests++;  // room again: b gets its own
  const Snapshot s = capped.Collect();
  EXPECT_EQ(Value(s, "request_total", {{"pod", "b"}}), 1);
  EXPECT_EQ(Value(s, "request_total", {{"podtap_overflow", "true"}}), 1);
}

TEST_F(AggregatorExpiryTest, ExpiryFreesTheLabelSetsOnlyTheSeriesHeld) {
  const size_t before = agg.LabelSetCount();  // the overflow's and api-0's
  EXPECT_EQ(before, 2u);
  Aggregator::LabelSetId gone_id = 0;
  {
    Aggregator::LabelRef gone = agg.Intern(Pod("job-1"));  // a connection's hold
    gone_id = gone.id();
    agg.Http(gone_id, Direction::kInbound, "a")->requests++;
    agg.Route(gone_id, Direction::kInbound, "a", "[DEFAULT]")->requests++;
    agg.Transport(gone_id, Direction::kInbound, false)->open_total++;
  }  // the connection is gone; its series still hold the set
  EXPECT_EQ(agg.LabelSetCount(), before + 1);
  agg.Collect();
  auto exists = [](const Labels& l) { return LabelSetPodsExist(l, {{"shop", "api-0"}}); };
  agg.Expire(t0, 1s, exists);
  EXPECT_EQ(agg.Expire(t0 + 1min, 1s, exists), 3u);
  EXPECT_EQ(agg.LabelSetCount(), before);
  // A new set may take the freed slot, under a new id.
  Aggregator::LabelRef next = agg.Intern(Pod("job-2"));
  EXPECT_NE(next.id(), gone_id);
  agg.Http(next.id(), Direction::kInbound, "a")->requests++;
  const Snapshot s = agg.Collect();
  EXPECT_EQ(Value(s, "request_total", {{"pod", "job-2"}}), 1);
  EXPECT_EQ(Find(s, "request_total", {{"pod", "job-1"}}), nullptr);
  EXPECT_EQ(Value(s, "podtap_label_sets", {}), static_cast<double>(before + 1));
}

TEST(LabelSetPodsExist, TheLocalPodAndTheDestinationPodMustBothExist) {
  const PodKeys live = {{"shop", "api-0"}};
  EXPECT_TRUE(LabelSetPodsExist(Pod("api-0"), live));
  EXPECT_FALSE(LabelSetPodsExist(Pod("job-1"), live));
  // Host processes belong to the node.
  EXPECT_TRUE(LabelSetPodsExist({{"namespace", ""}, {"pod", ""}, {"host_process", "true"}}, live));
  Labels to_job = Pod("api-0");
  to_job.insert(to_job.end(), {{"dst_namespace", "batch"}, {"dst_pod", "job-1"}});
  EXPECT_FALSE(LabelSetPodsExist(to_job, live));
  EXPECT_TRUE(LabelSetPodsExist(to_job, {{"shop", "api-0"}, {"batch", "job-1"}}));
  // A Service address names no destination pod.
  Labels to_service = Pod("api-0");
  to_service.insert(to_service.end(), {{"dst_namespace", "shop"}, {"dst_service", "web"}});
  EXPECT_TRUE(LabelSetPodsExist(to_service, live));
}

TEST_F(AggregatorExpiryTest, CountersOfAnExistingSeriesNeverGoBackwards) {
  HttpSeries* s = agg.Http(id, Direction::kInbound, "a");
  double last = 0;
  for (int i = 0; i < 20; i++) {
    s->requests++;
    agg.Expire(t0 + std::chrono::minutes(i), 1s, NoPods);  // always changed: kept
    const double now = Value(agg.Collect(), "request_total", {{"authority", "a"}});
    EXPECT_GE(now, last);
    last = now;
  }
  EXPECT_EQ(last, 20);
}

}  // namespace
}  // namespace podtap
