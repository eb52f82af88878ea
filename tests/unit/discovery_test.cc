// Reading podtap's agent pods from a PodList (cli/discovery.h).
#include "cli/discovery.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

std::string Pod(const std::string& name, const std::string& node, const std::string& phase,
                const std::string& ip, const std::string& port_name, int port) {
  return R"({"metadata":{"namespace":"podtap","name":")" + name + R"("},
    "spec":{"nodeName":")" +
         node + R"(","containers":[{"name":"agent","ports":[
      {"name":"metrics","containerPort":4191},
      {"name":")" +
         port_name + R"(","containerPort":)" + std::to_string(port) + R"(}]}]},
    "status":{"phase":")" +
         phase + R"(","podIP":")" + ip + R"("}})";
}

std::string List(const std::vector<std::string>& pods) {
  std::string items;
  for (const auto& p : pods) items += (items.empty() ? "" : ",") + p;
  return R"({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[)" + items + "]}";
}

TEST(AgentsOfPodList, EveryAgentPodByNodeWithWhyItCannotBeAsked) {
  std::string body = List({Pod("podtap-b", "node-b", "Running", "10.0.0.2", "query", 4192),
                           Pod("podtap-a", "node-a", "Running", "fd00::1", "query", 4192),
                           Pod("podtap-c", "node-c", "Pending", "", "query", 4192),
                           Pod("podtap-d", "node-d", "Running", "10.0.0.4", "other", 4192)});
  std::vector<AgentTarget> got;
  std::string error;
  ASSERT_TRUE(AgentsOfPodList(body, "", &got, &error)) << error;
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].node, "node-a");
  EXPECT_EQ(got[0].address, "[fd00::1]:4192");
  EXPECT_EQ(got[1].address, "10.0.0.2:4192");
  EXPECT_EQ(got[1].pod, "podtap/podtap-b");
  EXPECT_EQ(got[2].address, "");
  EXPECT_EQ(got[2].error, "pod podtap/podtap-c is Pending");
  EXPECT_EQ(got[3].error, "pod podtap/podtap-d has no container port named query (--query-listen)");
  ASSERT_TRUE(AgentsOfPodList(body, "node-b", &got, &error));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].address, "10.0.0.2:4192");
  ASSERT_TRUE(AgentsOfPodList(body, "node-z", &got, &error));
  EXPECT_TRUE(got.empty());
}

TEST(AgentsOfPodList, RefusesWhatIsNotAPodList) {
  std::vector<AgentTarget> got;
  std::string error;
  EXPECT_FALSE(AgentsOfPodList("{\"kind\":\"Status\"}", "", &got, &error));
  EXPECT_EQ(error, "the API's answer is not a PodList");
  EXPECT_FALSE(AgentsOfPodList("not json", "", &got, &error));
  EXPECT_FALSE(AgentsOfPodList("[]", "", &got, &error));
}

}  // namespace
}  // namespace podtap
