// kubectl podtap's port-forward child (cli/port_forward.h): the forwarding
// line, and a stand-in kubectl that forwards, is refused, is missing or hangs.
#include "cli/port_forward.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

namespace podtap {
namespace {

TEST(ForwardedPort, OnlyTheIpv4ForwardingLine) {
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1:41234 -> 4193"), 41234);
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1:1 -> 4193"), 1);
  EXPECT_EQ(ForwardedPort("Forwarding from [::1]:41234 -> 4193"), 0);
  EXPECT_EQ(ForwardedPort("Handling connection for 41234"), 0);
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1:0 -> 4193"), 0);
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1:65536 -> 4193"), 0);
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1: -> 4193"), 0);
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1:80x -> 4193"), 0);
  EXPECT_EQ(ForwardedPort("Forwarding from 127.0.0.1:80"), 0);
  EXPECT_EQ(ForwardedPort("error: Forwarding from 127.0.0.1:80 -> 4193"), 0);
  EXPECT_EQ(ForwardedPort(""), 0);
}

class FakeKubectl : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podtap-pf-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  // A kubectl running `script` (sh); returns its path.
  std::string Write(const std::string& script) {
    std::string path = dir_ + "/kubectl";
    std::ofstream(path) << "#!/bin/sh\n" << script;
    chmod(path.c_str(), 0755);
    return path;
  }
  std::string dir_;
};

TEST_F(FakeKubectl, ForwardsThenIsStoppedByPid) {
  std::string kubectl = Write("echo \"$@\" > " + dir_ +
                              "/args\n"
                              "echo 'Forwarding from 127.0.0.1:40555 -> 4193'\n"
                              "echo 'Forwarding from [::1]:40555 -> 4193'\n"
                              "exec sleep 60\n");
  std::string error;
  pid_t pid = 0;
  {
    auto pf = PortForward::Start(
        kubectl, {"port-forward", "-n", "podtap-relay", "deploy/podtap-relay", ":4193"}, 5, &error);
    ASSERT_NE(pf, nullptr) << error;
    EXPECT_EQ(pf->port(), 40555);
    pid = pf->pid();
    EXPECT_EQ(kill(pid, 0), 0);
    std::ifstream args(dir_ + "/args");
    std::string line;
    std::getline(args, line);
    EXPECT_EQ(line, "port-forward -n podtap-relay deploy/podtap-relay :4193");
  }
  // Stopped and reaped: the PID is gone.
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(FakeKubectl, NeverOutlivesTheCli) {
  std::string kubectl = Write("echo $$ > " + dir_ +
                              "/pid\necho 'Forwarding from 127.0.0.1:40555 -> 4193'\n"
                              "exec sleep 60\n");
  // A CLI that starts the forward and is then killed outright (no
  // destructor runs).
  pid_t cli = fork();
  ASSERT_GE(cli, 0);
  if (cli == 0) {
    std::string error;
    auto pf = PortForward::Start(kubectl, {"port-forward"}, 5, &error);
    if (pf == nullptr) _exit(1);
    pause();
    _exit(0);
  }
  pid_t child = 0;
  for (int i = 0; i < 500 && child == 0; i++) {
    std::ifstream(dir_ + "/pid") >> child;
    if (child == 0) usleep(10000);
  }
  ASSERT_GT(child, 0);
  usleep(100000);  // past the forwarding line
  kill(cli, SIGKILL);
  int status = 0;
  waitpid(cli, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  // The kernel's parent-death signal ends kubectl (reaped by init).
  bool gone = false;
  for (int i = 0; i < 300 && !gone; i++) {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid, comm, state;
    gone = !(stat >> pid >> comm >> state) || state == "Z";
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone) << "kubectl " << child << " outlived the CLI";
}

TEST_F(FakeKubectl, ForbiddenSaysWhatKubectlSaid) {
  std::string kubectl = Write(
      "echo 'Error from server (Forbidden): pods \"podtap-relay-7d9\" is forbidden: User "
      "\"bob\" cannot create resource \"pods/portforward\"' >&2\nexit 1\n");
  std::string error;
  EXPECT_EQ(PortForward::Start(kubectl, {"port-forward"}, 5, &error), nullptr);
  EXPECT_EQ(error,
            "`" + kubectl +
                " port-forward` exited: Error from server (Forbidden): pods \"podtap-relay-7d9\" "
                "is forbidden: User \"bob\" cannot create resource \"pods/portforward\"");
}

TEST_F(FakeKubectl, MissingKubectl) {
  std::string error;
  EXPECT_EQ(PortForward::Start(dir_ + "/no-such-kubectl", {}, 5, &error), nullptr);
  EXPECT_NE(error.find("not found in PATH"), std::string::npos) << error;
}

TEST_F(FakeKubectl, SilentKubectlIsBoundedAndStopped) {
  std::string kubectl = Write("echo $$ > " + dir_ + "/pid\necho 'waiting'\nexec sleep 60\n");
  std::string error;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(PortForward::Start(kubectl, {"port-forward"}, 0.5, &error), nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(error, "`" + kubectl + " port-forward` did not start forwarding within 0.5s: waiting");
  pid_t pid = 0;
  std::ifstream(dir_ + "/pid") >> pid;
  ASSERT_GT(pid, 0);
  EXPECT_EQ(kill(pid, 0), -1);
}

}  // namespace
}  // namespace podtap
