// Live taps: filters, the per-stream rate limit, bounded queues, the cap on
// concurrent taps, and what a recorder publishes.
#include "agent/query/tap.h"

#include <gtest/gtest.h>

#include "agent/query/query_recorder.h"

namespace podtap {
namespace {

constexpr uint64_t kSec = 1'000'000'000;

TapRecord R(std::string pod, Direction dir, std::string path, int status) {
  TapRecord r;
  r.local = {"shop", std::move(pod), "deployment", "api", true, false};
  r.direction = dir;
  r.method = "GET";
  r.authority = "api.shop";
  r.path = std::move(path);
  r.status = status;
  return r;
}

TEST(TapFilter, EveryFieldNarrows) {
  TapRecord r = R("api-1", Direction::kInbound, "/users/7", 503);
  EXPECT_TRUE(TapFilter{}.Matches(r));
  TapFilter f;
  f.ns = "shop";
  f.workload_kind = "deployment";
  f.workload = "api";
  f.pod = "api-1";
  f.direction = Direction::kInbound;
  f.authority = "api.shop";
  f.path_prefix = "/users/";
  f.status_class = 5;
  EXPECT_TRUE(f.Matches(r));
  auto without = [&](auto change) {
    TapFilter g = f;
    change(g);
    return g.Matches(r);
  };
  EXPECT_FALSE(without([](TapFilter& g) { g.ns = "other"; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.pod = "api-2"; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.workload = "web"; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.workload_kind = "statefulset"; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.direction = Direction::kOutbound; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.authority = "api"; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.path_prefix = "/orders"; }));
  EXPECT_FALSE(without([](TapFilter& g) { g.status_class = 2; }));
}

TEST(TapHub, CapsConcurrentTapsWithAClearReason) {
  TapHub hub(TapOptions{2, 100, 16});
  std::string err;
  auto a = hub.Subscribe({}, 0, &err);
  auto b = hub.Subscribe({}, 0, &err);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(hub.streams(), 2u);
  EXPECT_EQ(hub.Subscribe({}, 0, &err), nullptr);
  EXPECT_NE(err.find("too many taps: 2 already running"), std::string::npos) << err;
  hub.Unsubscribe(a);
  EXPECT_NE(hub.Subscribe({}, 0, &err), nullptr);
}

TEST(TapHub, DeliversMatchingRecordsInOrder) {
  TapHub hub;
  std::string err;
  TapFilter only_api;
  only_api.pod = "api-1";
  auto s = hub.Subscribe(only_api, 0, &err);
  EXPECT_FALSE(hub.Subscribe(TapFilter{}, 0, &err) == nullptr);
  hub.Publish(R("api-1", Direction::kInbound, "/1", 200), kSec);
  hub.Publish(R("web-1", Direction::kInbound, "/x", 200), kSec);
  hub.Publish(R("api-1", Direction::kInbound, "/2", 200), kSec);
  auto one = s->Next(0);
  auto two = s->Next(0);
  ASSERT_TRUE(one && two);
  EXPECT_EQ(one->record.path, "/1");
  EXPECT_EQ(two->record.path, "/2");
  EXPECT_FALSE(s->Next(0));
  EXPECT_FALSE(s->closed());
  hub.Close();
  EXPECT_FALSE(s->Next(1000));  // returns at once: closed
  EXPECT_TRUE(s->closed());
}

TEST(TapHub, RateLimitsEachStreamAndCountsWhatItSkips) {
  TapHub hub(TapOptions{4, 100, 1000});
  std::string err;
  auto slow = hub.Subscribe({}, 2, &err);  // 2 a second, burst 2
  auto fast = hub.Subscribe({}, 0, &err);  // the agent's 100
  // 5 records in the same instant: 2 pass on `slow`, all 5 on `fast`.
  for (int i = 0; i < 5; i++) hub.Publish(R("api-1", Direction::kInbound, "/", 200), kSec);
  EXPECT_EQ(hub.dropped_rate_limited(), 3u);
  // Half a second later one token is back.
  hub.Publish(R("api-1", Direction::kInbound, "/late", 200), kSec + kSec / 2);
  std::vector<TapStream::Item> got;
  while (auto item = slow->Next(0)) got.push_back(*item);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].record.path, "/late");
  EXPECT_EQ(got[2].skipped_before, 3u);
  int fast_got = 0;
  while (fast->Next(0)) fast_got++;
  EXPECT_EQ(fast_got, 6);
}

TEST(TapHub, ASlowReaderLosesRecordsNotTheEventLoop) {
  TapHub hub(TapOptions{4, 1000000, 3});
  std::string err;
  auto s = hub.Subscribe({}, 0, &err);
  for (int i = 0; i < 10; i++) {
    hub.Publish(R("api-1", Direction::kInbound, "/" + std::to_string(i), 200), kSec + i);
  }
  EXPECT_EQ(hub.dropped_queue_full(), 7u);
  EXPECT_EQ(s->Next(0)->record.path, "/0");
  hub.Publish(R("api-1", Direction::kInbound, "/next", 200), 2 * kSec);
  s->Next(0);
  s->Next(0);
  auto next = s->Next(0);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->record.path, "/next");
  EXPECT_EQ(next->skipped_before, 7u);
}

TEST(QueryRecorder, PublishesOnlyWhenSomeoneTapsAndNeverAQueryString) {
  TapHub hub;
  QueryRecorder rec(&hub);
  const auto held = rec.EndpointsOf(nullptr, nullptr);
  Exchange x;
  x.endpoints = held.id();
  x.method = "GET";
  x.path = "/search?q=secret";
  x.status = 200;
  x.ts_ns = kSec;
  rec.OnExchange(x);  // nobody taps: only the window counts it
  std::string err;
  auto s = hub.Subscribe({}, 0, &err);
  x.ts_ns = 2 * kSec;
  rec.OnExchange(x);
  auto got = s->Next(0);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->record.path, "/search");
  EXPECT_FALSE(s->Next(0));
  EXPECT_EQ(rec.window().Sum(2 * kSec, 60 * kSec).begin()->second.requests, 2u);
}

TEST(QueryRecorder, TapsAndTopKeepValidUtf8OfBoundedLength) {
  TapHub hub;
  QueryRecorder rec(&hub);
  std::string err;
  auto s = hub.Subscribe({}, 0, &err);
  std::string long_path = "/" + std::string(5000, 'a');
  std::string bad_authority = "api\xff\xfe";
  Exchange x;
  const auto held = rec.EndpointsOf(nullptr, nullptr);
  x.endpoints = held.id();
  x.method = "GET";
  x.authority = bad_authority;
  x.path = long_path;
  x.ts_ns = kSec;
  rec.OnExchange(x);
  rec.OnExchange(x);
  auto got = s->Next(0);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->record.path.size(), QueryRecorder::kMaxTapValueBytes);
  EXPECT_EQ(got->record.authority, "api\xEF\xBF\xBD\xEF\xBF\xBD");  // U+FFFD each
  auto top = rec.window().SumTop(kSec, 60 * kSec);
  ASSERT_EQ(top.size(), 1u);  // both exchanges in one kind, as cut
  EXPECT_EQ(top.begin()->first.path.size(), 256u);
  EXPECT_EQ(top.begin()->second.requests, 2u);
}

}  // namespace
}  // namespace podtap
