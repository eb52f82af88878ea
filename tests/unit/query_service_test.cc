// The query service in process: flag checks, the unix socket's modes and
// reuse, the per-call uid check, errors for bad requests and names that
// match nothing, and the tap cap, through a real gRPC client on the socket.
#include "agent/query_service.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "query.grpc.pb.h"

namespace podtap {
namespace {

namespace pb = ::podtap::v1;

TEST(QueryOptions, TcpNeedsTlsAndAToken) {
  QueryServerOptions o;
  EXPECT_EQ(CheckQueryOptions(o), "");
  o.listen = "127.0.0.1:7000";
  EXPECT_NE(CheckQueryOptions(o).find("needs TLS and a bearer token"), std::string::npos);
  o.tls_cert = "c";
  o.tls_key = "k";
  EXPECT_NE(CheckQueryOptions(o).find("--query-token-file"), std::string::npos);
  o.token_file = "t";
  EXPECT_EQ(CheckQueryOptions(o), "");
  o.listen.clear();
  EXPECT_NE(CheckQueryOptions(o).find("only apply with --query-listen"), std::string::npos);
}

class QueryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podtap-query-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    opts_.socket_path = dir_ + "/q/podtap.sock";
    AgentOptions a;
    a.taps.max_taps = 1;
    agent_ = std::make_unique<Agent>(a);
    server_ = std::make_unique<QueryServer>(agent_.get(), opts_);
    ASSERT_EQ(server_->Start(), "");
    stub_ = pb::Query::NewStub(
        grpc::CreateChannel("unix://" + opts_.socket_path, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Stop();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return c;
  }
  static bool Root() { return geteuid() == 0; }

  std::string dir_;
  QueryServerOptions opts_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<QueryServer> server_;
  std::unique_ptr<pb::Query::Stub> stub_;
};

TEST_F(QueryServiceTest, OnlyItsOwnerMayReachTheSocket) {
  struct stat st {};
  ASSERT_EQ(stat(opts_.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_ + "/q").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(QueryServiceTest, AnswersRootAndRefusesEveryoneElse) {
  pb::StatRequest req;
  pb::StatResponse resp;
  auto ctx = Ctx();
  grpc::Status st = stub_->Stat(ctx.get(), req, &resp);
  if (Root()) {
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.window_seconds(), 60u);
    EXPECT_EQ(resp.rows_size(), 0);
  } else {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_NE(st.error_message().find("answers root only; this caller is uid "), std::string::npos);
  }
}

TEST_F(QueryServiceTest, BadRequestsAndUnknownNamesAreClearErrors) {
  if (!Root()) GTEST_SKIP() << "the socket answers root only";
  pb::StatRequest req;
  pb::StatResponse resp;
  req.set_window_seconds(3600);
  auto c1 = Ctx();
  grpc::Status st = stub_->Stat(c1.get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "window of 3600s is longer than the 600s the agent keeps");
  req.set_window_seconds(0);
  req.set_group_by("node");
  auto c2 = Ctx();
  EXPECT_EQ(stub_->Stat(c2.get(), req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_group_by("workload");
  req.mutable_selector()->set_namespace_("shop");
  req.mutable_selector()->set_workload_kind("deployment");
  req.mutable_selector()->set_workload("api");
  auto c3 = Ctx();
  st = stub_->Stat(c3.get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(),
            "no pod on this node matches deployment api, namespace shop (and no traffic of one "
            "was seen)");
  pb::TopRequest top;
  top.set_by("host");
  pb::TopResponse top_resp;
  auto c4 = Ctx();
  EXPECT_EQ(stub_->Top(c4.get(), top, &top_resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(QueryServiceTest, ATapPastTheCapIsRefusedAndItsSlotFreedAfter) {
  if (!Root()) GTEST_SKIP() << "the socket answers root only";
  pb::TapRequest req;
  grpc::ClientContext first;
  auto reader = stub_->Tap(&first, req);
  reader->WaitForInitialMetadata();
  EXPECT_EQ(first.GetServerInitialMetadata().count("podtap-tap"), 1u);
  EXPECT_EQ(agent_->taps().streams(), 1u);

  auto second_ctx = Ctx();
  auto second = stub_->Tap(second_ctx.get(), req);
  pb::TapEvent ev;
  EXPECT_FALSE(second->Read(&ev));
  grpc::Status st = second->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(st.error_message().find("too many taps: 1 already running"), std::string::npos);

  first.TryCancel();
  EXPECT_FALSE(reader->Read(&ev));
  reader->Finish();
  for (int i = 0; i < 100 && agent_->taps().streams() != 0; i++) usleep(10000);
  EXPECT_EQ(agent_->taps().streams(), 0u);
}

TEST_F(QueryServiceTest, ASecondServerDoesNotTakeALiveSocket) {
  QueryServer other(agent_.get(), opts_);
  EXPECT_NE(other.Start().find("is in use by another process"), std::string::npos);
}

TEST(QueryServerSocket, ReplacesAStaleSocketButNeverAFile) {
  char tmpl[] = "/tmp/podtap-query-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  QueryServerOptions o;
  o.socket_path = dir + "/podtap.sock";
  // A socket nobody listens on: left by an agent that did not stop cleanly.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, o.socket_path.c_str(), o.socket_path.size());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  Agent agent(AgentOptions{});
  {
    QueryServer s(&agent, o);
    EXPECT_EQ(s.Start(), "");
  }
  EXPECT_FALSE(std::filesystem::exists(o.socket_path));  // removed at stop
  { std::ofstream(o.socket_path) << "not a socket"; }
  QueryServer s(&agent, o);
  EXPECT_NE(s.Start().find("exists and is not a socket"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace podtap
