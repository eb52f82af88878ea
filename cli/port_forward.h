// kubectl port-forward to podtap-relay as a child of `kubectl podtap`: started
// with the user's own kubectl (so the API server authorizes the user), its
// local port read from kubectl's "Forwarding from 127.0.0.1:N -> PORT" line
// within a bounded wait, stopped by its PID (and by the kernel, should the
// CLI die first).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace podtap {

// The local port of one line of kubectl port-forward's output when it is
// "Forwarding from 127.0.0.1:N -> M"; 0 for any other line (the [::1] one,
// "Handling connection for N", errors).
uint16_t ForwardedPort(std::string_view line);

class PortForward {
 public:
  // Runs `kubectl ARGS...` (searched in PATH) and waits up to `timeout_s`
  // for the forwarding line. nullptr with `error` set, saying what kubectl
  // said, when it is missing, exits (forbidden, no such Deployment) or does
  // not forward in time (it is then stopped).
  static std::unique_ptr<PortForward> Start(const std::string& kubectl,
                                            const std::vector<std::string>& args, double timeout_s,
                                            std::string* error);
  // Stops kubectl (SIGTERM, then waits for it).
  ~PortForward();
  PortForward(const PortForward&) = delete;
  PortForward& operator=(const PortForward&) = delete;

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  PortForward(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  pid_t pid_;
  int out_fd_;
  uint16_t port_ = 0;
  std::thread drain_;  // reads kubectl's later lines, so it never blocks writing them
};

}  // namespace podtap
