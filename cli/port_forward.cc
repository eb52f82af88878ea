// kubectl port-forward as a child process (cli/port_forward.h).
#include "cli/port_forward.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace podtap {
namespace {

// kubectl's output kept for an error message: its last lines, at most this.
constexpr size_t kMaxOutput = 4096;

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace

uint16_t ForwardedPort(std::string_view line) {
  constexpr std::string_view kPrefix = "Forwarding from 127.0.0.1:";
  if (!line.starts_with(kPrefix)) return 0;
  line.remove_prefix(kPrefix.size());
  unsigned port = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), port);
  if (ec != std::errc() || end == line.data() || port == 0 || port > 65535) return 0;
  std::string_view rest(end, line.data() + line.size() - end);
  if (!rest.starts_with(" -> ")) return 0;
  return static_cast<uint16_t>(port);
}

std::unique_ptr<PortForward> PortForward::Start(const std::string& kubectl,
                                                const std::vector<std::string>& args,
                                                double timeout_s, std::string* error) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return nullptr;
  }
  // Told of exec's failure through a pipe that exec closes.
  int status_fds[2];
  if (pipe2(status_fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return nullptr;
  }
  std::vector<std::string> argv_s = {kubectl};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // kubectl never outlives the CLI, however the CLI ends (a SIGKILL too).
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(127);
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0) _exit(127);
    execvp(kubectl.c_str(), argv.data());
    int err = errno;
    (void)!write(status_fds[1], &err, sizeof(err));
    _exit(127);
  }
  int spawn_errno = pid < 0 ? errno : 0;
  close(fds[1]);
  close(status_fds[1]);
  if (pid > 0) {
    int err = 0;
    ssize_t n;
    while ((n = read(status_fds[0], &err, sizeof(err))) < 0 && errno == EINTR) {
    }
    if (n == sizeof(err)) {
      spawn_errno = err;
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  close(status_fds[0]);
  if (spawn_errno != 0) {
    close(fds[0]);
    *error = spawn_errno == ENOENT
                 ? "cannot run " + kubectl +
                       ": not found in PATH (kubectl podtap reaches podtap-relay through kubectl "
                       "port-forward; or pass --relay, --agent or --kube)"
                 : "cannot run " + kubectl + ": " + std::strerror(spawn_errno);
    return nullptr;
  }
  std::unique_ptr<PortForward> pf(new PortForward(pid, fds[0]));
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  std::string output, line;
  std::string command = kubectl;
  for (const auto& a : args) command += " " + a;
  while (pf->port_ == 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      char limit[32];
      std::snprintf(limit, sizeof(limit), "%gs", timeout_s);
      *error = "`" + command + "` did not start forwarding within " + limit +
               (output.empty() ? "" : ": " + Trim(output));
      return nullptr;  // the destructor stops it
    }
    pollfd p{pf->out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[512];
    ssize_t n = read(pf->out_fd_, buf, sizeof(buf));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      *error = "`" + command + "` exited: " + (output.empty() ? "no output" : Trim(output));
      return nullptr;
    }
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != '\n') {
        line += buf[i];
        continue;
      }
      if (uint16_t port = ForwardedPort(line); port != 0 && pf->port_ == 0) pf->port_ = port;
      if (output.size() < kMaxOutput) output += line + "\n";
      line.clear();
    }
  }
  pf->drain_ = std::thread([fd = pf->out_fd_] {
    char buf[512];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n > 0 || (n < 0 && errno == EINTR)) continue;
      return;
    }
  });
  return pf;
}

PortForward::~PortForward() {
  kill(pid_, SIGTERM);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  // kubectl gone, the pipe's write end is closed: the drain ends.
  if (drain_.joinable()) drain_.join();
  close(out_fd_);
}

}  // namespace podtap
