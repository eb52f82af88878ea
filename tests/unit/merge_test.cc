// Merging several agents' answers (cli/merge.h): sums, histograms added and
// percentiles from the sum, edges counted once, connections oldest first.
#include "cli/merge.h"

#include <gtest/gtest.h>

#include "agent/query/latency_histogram.h"

namespace podtap {
namespace {

namespace pb = ::podtap::v1;

void Observe(pb::LatencyHistogram* h, double ms, uint64_t n) {
  LatencyHistogram l;
  for (int i = 0; i < h->bucket_size(); i++) l.Add(h->bucket(i), h->count(i));
  l.Add(LatencyHistogram::IndexOf(static_cast<uint64_t>(ms * 1e6)), n);
  h->Clear();
  for (const auto& [b, c] : l.buckets()) {
    h->add_bucket(b);
    h->add_count(c);
  }
}

pb::Endpoint Pod(const std::string& name) {
  pb::Endpoint e;
  e.set_namespace_("shop");
  e.set_pod(name);
  e.set_workload_kind("deployment");
  e.set_workload(name.substr(0, name.find('-')));
  return e;
}

pb::StatRow Row(const pb::Endpoint& e, pb::Direction d, uint64_t requests, uint64_t successes,
                double ms) {
  pb::StatRow r;
  *r.mutable_resource() = e;
  r.set_direction(d);
  r.set_requests(requests);
  r.set_successes(successes);
  r.set_rps(static_cast<double>(requests) / 60);
  r.set_tcp_open_connections(1);
  r.set_read_bytes(10 * requests);
  r.set_write_bytes(20 * requests);
  Observe(r.mutable_latency(), ms, requests);
  // What an agent computes; the merge must not average these.
  r.set_latency_p99_ms(ms);
  return r;
}

TEST(MergeStat, SumsRowsOfTheSameResourceAndTakesPercentilesFromTheSummedBuckets) {
  pb::Endpoint api = Pod("api-1");
  api.clear_pod();  // a workload row: api's pods on two nodes
  pb::StatResponse a, b;
  a.set_window_seconds(60);
  b.set_window_seconds(60);
  *a.add_rows() = Row(api, pb::INBOUND, 990, 980, 1);
  *b.add_rows() = Row(api, pb::INBOUND, 10, 0, 800);
  *b.add_rows() = Row(Pod("web-1"), pb::OUTBOUND, 5, 5, 2);
  pb::StatResponse m = MergeStat({a, b});
  ASSERT_EQ(m.rows_size(), 2);
  EXPECT_EQ(m.window_seconds(), 60u);
  const pb::StatRow& r = m.rows(0);  // api's row sorts first
  EXPECT_EQ(r.resource().workload(), "api");
  EXPECT_EQ(r.requests(), 1000u);
  EXPECT_EQ(r.successes(), 980u);
  EXPECT_DOUBLE_EQ(r.success_rate(), 0.98);
  EXPECT_DOUBLE_EQ(r.rps(), 1000.0 / 60);
  EXPECT_EQ(r.tcp_open_connections(), 2u);
  EXPECT_EQ(r.read_bytes(), 10000u);
  EXPECT_EQ(r.write_bytes(), 20000u);
  // p99 is rank 990: the last 1 ms request; p99.9 would be the 800 ms ones.
  // Averaging the agents' p99s would say 400 ms.
  auto bucket = [](double ms) {
    return LatencyHistogram::IndexOf(static_cast<uint64_t>(ms * 1e6));
  };
  EXPECT_EQ(bucket(r.latency_p99_ms()), bucket(1));
  EXPECT_EQ(bucket(r.latency_p50_ms()), bucket(1));
  ASSERT_EQ(r.latency().bucket_size(), 2);
  EXPECT_EQ(r.latency().count(0) + r.latency().count(1), 1000u);
  EXPECT_EQ(m.rows(1).resource().pod(), "web-1");
  EXPECT_EQ(m.rows(1).requests(), 5u);
}

TEST(MergeTop, SumsKindsThenRanksAndCutsLikeOneAgent) {
  auto row = [](const std::string& path, uint64_t requests, uint64_t failures) {
    pb::TopRow r;
    r.set_direction(pb::INBOUND);
    r.set_method("GET");
    r.set_key(path);
    r.set_requests(requests);
    r.set_failures(failures);
    Observe(r.mutable_latency(), 3, requests);
    return r;
  };
  pb::TopResponse a, b;
  *a.add_rows() = row("/a", 10, 0);
  *a.add_rows() = row("/b", 8, 8);
  *b.add_rows() = row("/b", 8, 0);
  *b.add_rows() = row("/c", 1, 1);
  a.set_dropped(2);
  b.set_dropped(3);
  pb::TopResponse m = MergeTop({a, b}, "requests", 2);
  ASSERT_EQ(m.rows_size(), 2);
  EXPECT_EQ(m.rows(0).key(), "/b");  // 16 over two nodes beats /a's 10
  EXPECT_EQ(m.rows(0).requests(), 16u);
  EXPECT_EQ(m.rows(0).failures(), 8u);
  EXPECT_DOUBLE_EQ(m.rows(0).success_rate(), 0.5);
  EXPECT_EQ(m.rows(1).key(), "/a");
  EXPECT_EQ(m.dropped(), 5u);
  pb::TopResponse f = MergeTop({a, b}, "failures", 20);
  ASSERT_EQ(f.rows_size(), 3);
  EXPECT_EQ(f.rows(0).key(), "/b");
  EXPECT_EQ(f.rows(1).key(), "/c");
  EXPECT_EQ(f.rows(2).key(), "/a");
}

TEST(MergeEdges, AnEdgeSeenFromBothNodesCountsOnceFromTheClient) {
  auto edge = [](const std::string& src, const std::string& dst, pb::Direction observed,
                 uint64_t requests, double ms) {
    pb::Edge e;
    *e.mutable_source() = Pod(src);
    *e.mutable_destination() = Pod(dst);
    e.set_requests(requests);
    e.set_successes(requests);
    e.set_bytes(100);
    e.set_observed(observed);
    Observe(e.mutable_latency(), ms, requests);
    return e;
  };
  pb::EdgesResponse client_node, server_node;
  *client_node.add_edges() = edge("web-1", "api-1", pb::OUTBOUND, 7, 5);
  *server_node.add_edges() = edge("web-1", "api-1", pb::INBOUND, 7, 4);
  // A client no agent answered for: only the server saw it.
  *server_node.add_edges() = edge("cron-1", "api-1", pb::INBOUND, 3, 4);
  pb::EdgesResponse m = MergeEdges({server_node, client_node});
  ASSERT_EQ(m.edges_size(), 2);
  EXPECT_EQ(m.edges(0).source().pod(), "cron-1");
  EXPECT_EQ(m.edges(0).requests(), 3u);
  EXPECT_EQ(m.edges(0).observed(), pb::INBOUND);
  EXPECT_EQ(m.edges(1).source().pod(), "web-1");
  EXPECT_EQ(m.edges(1).requests(), 7u);
  EXPECT_EQ(m.edges(1).bytes(), 100u);
  EXPECT_EQ(m.edges(1).observed(), pb::OUTBOUND);
  EXPECT_EQ(LatencyHistogram::IndexOf(static_cast<uint64_t>(m.edges(1).latency_p50_ms() * 1e6)),
            LatencyHistogram::IndexOf(5'000'000));
  EXPECT_DOUBLE_EQ(m.edges(1).success_rate(), 1);
}

TEST(MergeConns, OldestFirstAcrossNodesCutToTheLimit) {
  pb::ConnsResponse a, b;
  for (double age : {5.0, 1.0}) a.add_conns()->set_age_seconds(age);
  for (double age : {9.0, 3.0}) b.add_conns()->set_age_seconds(age);
  a.set_total(2);
  b.set_total(7);  // five past its limit
  pb::ConnsResponse m = MergeConns({a, b}, 3);
  ASSERT_EQ(m.conns_size(), 3);
  EXPECT_EQ(m.conns(0).age_seconds(), 9.0);
  EXPECT_EQ(m.conns(1).age_seconds(), 5.0);
  EXPECT_EQ(m.conns(2).age_seconds(), 3.0);
  EXPECT_EQ(m.total(), 9u);
}

TEST(CheckHistogram, RefusesMismatchedOrOutOfRangeBuckets) {
  pb::LatencyHistogram h;
  std::string error;
  EXPECT_TRUE(CheckHistogram(h, &error));
  h.add_bucket(3);
  EXPECT_FALSE(CheckHistogram(h, &error));
  EXPECT_EQ(error, "a latency histogram with 1 buckets but 0 counts");
  h.add_count(1);
  EXPECT_TRUE(CheckHistogram(h, &error));
  h.add_bucket(LatencyHistogram::kBuckets);
  h.add_count(1);
  EXPECT_FALSE(CheckHistogram(h, &error));
  EXPECT_EQ(error, "a latency bucket past the last one: 1472");
}

}  // namespace
}  // namespace podtap
