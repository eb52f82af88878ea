// podtap-relay's pure parts (relay/relay_service.h) and the coverage lines
// the CLI and the relay share (cli/fanout.h).
#include "relay/relay_service.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

v1::Coverage TwoOfThree() {
  v1::Coverage c;
  c.set_asked(3);
  c.add_answered("node-a (10.0.0.1:4192)");
  c.add_answered("node-b (10.0.0.2:4192)");
  v1::Unanswered* u = c.add_unanswered();
  u->set_agent("node-c");
  u->set_error("pod podtap/podtap-c is Pending");
  return c;
}

TEST(RelayListen, LoopbackOnly) {
  EXPECT_EQ(CheckLoopbackListen("127.0.0.1:4193"), "");
  EXPECT_EQ(CheckLoopbackListen("127.1.2.3:4193"), "");
  EXPECT_EQ(CheckLoopbackListen("[::1]:4193"), "");
  EXPECT_EQ(CheckLoopbackListen("localhost:4193"), "");
  for (const char* bad : {"0.0.0.0:4193", "[::]:4193", ":4193", "10.0.0.1:4193", "127.0.0.1",
                          "127.0.0.1:", "podtap-relay:4193", "[::ffff:127.0.0.1]:4193"}) {
    EXPECT_NE(CheckLoopbackListen(bad).find("loopback address only"), std::string::npos) << bad;
  }
}

TEST(RelayTimeout, TheCallersDeadlineShortensIt) {
  auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(1000);
  // No deadline (gRPC's is the far future): the relay's own.
  EXPECT_DOUBLE_EQ(AgentTimeout(10, std::chrono::system_clock::time_point::max(), now), 10);
  EXPECT_DOUBLE_EQ(AgentTimeout(10, now + std::chrono::seconds(2), now), 1.75);
  EXPECT_DOUBLE_EQ(AgentTimeout(1, now + std::chrono::seconds(30), now), 1);
  // Already late: a short try rather than none.
  EXPECT_DOUBLE_EQ(AgentTimeout(10, now - std::chrono::seconds(1), now), 0.1);
}

TEST(RelayStatus, WhoAnsweredDecidesTheStatus) {
  v1::Coverage c = TwoOfThree();
  EXPECT_TRUE(FanOutStatus(c, true, "").ok());
  grpc::Status nf = FanOutStatus(c, true, "no pod shop/web");
  EXPECT_EQ(nf.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(nf.error_message(),
            "no pod shop/web (nor on any other node that answered: answers from 2 of 3 agents; "
            "NO ANSWER from node-c: pod podtap/podtap-c is Pending)");
  v1::Coverage none;
  none.set_asked(2);
  for (const char* a : {"node-a", "node-b"}) {
    v1::Unanswered* u = none.add_unanswered();
    u->set_agent(a);
    u->set_error("Deadline Exceeded");
  }
  grpc::Status un = FanOutStatus(none, false, "");
  EXPECT_EQ(un.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(un.error_message(),
            "none of the 2 agents answered:\n  node-a: Deadline Exceeded\n  node-b: Deadline "
            "Exceeded");
}

TEST(CoverageLine, NamesEveryAgentThatDidNotAnswer) {
  EXPECT_EQ(CoverageLine(TwoOfThree()),
            "answers from 2 of 3 agents; NO ANSWER from node-c: pod podtap/podtap-c is Pending");
  v1::Coverage all;
  all.set_asked(1);
  all.add_answered("a");
  EXPECT_EQ(CoverageLine(all), "answers from 1 of 1 agents");
}

}  // namespace
}  // namespace podtap
