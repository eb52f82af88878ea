// sock_diag dump of ESTABLISHED TCP sockets with INET_DIAG_INFO (struct tcp_info).
#include "agent/kernel/sock_diag.h"

#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace podtap {
namespace {

constexpr int kTcpEstablished = 1;
constexpr int kTcpListen = 10;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// A netlink socket belongs to the namespace it was created in, so enter the
// target namespace on this thread just long enough to create it.
int SocketIn(const std::string& netns_path, std::string* error) {
  if (netns_path.empty()) {
    return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  }
  Fd self(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  Fd target(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (self.get() < 0 || target.get() < 0) {
    *error = Errno("open network namespace " + netns_path);
    return -1;
  }
  if (setns(target.get(), CLONE_NEWNET) != 0) {
    *error = Errno("enter network namespace " + netns_path);
    return -1;
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  int saved = errno;
  if (setns(self.get(), CLONE_NEWNET) != 0) {
    // Staying in a pod's namespace would misattribute everything after.
    std::abort();
  }
  errno = saved;
  if (fd < 0) *error = Errno("sock_diag socket in " + netns_path);
  return fd;
}

std::string DumpFamily(int fd, uint8_t family, uint32_t states, std::vector<DiagSocket>* out) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = states;
  msg.req.idiag_ext = 1u << (INET_DIAG_INFO - 1);
  if (send(fd, &msg, sizeof(msg), 0) < 0) return Errno("sock_diag request");

  alignas(nlmsghdr) char buf[32768];
  // A dump ends with NLMSG_DONE; the bound only stops a misbehaving kernel.
  for (int round = 0; round < 1000000; round++) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("sock_diag receive");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return "";
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return std::string("sock_diag error: ") + std::strerror(-err->error);
      }
      auto* diag = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      DiagSocket s;
      s.counters.conn_id =
          uint64_t{diag->id.idiag_cookie[0]} | (uint64_t{diag->id.idiag_cookie[1]} << 32);
      s.listening = diag->idiag_state == kTcpListen;
      const bool v6 = diag->idiag_family == AF_INET6;
      s.local = IpAddr::FromKernel(v6, reinterpret_cast<const uint8_t*>(diag->id.idiag_src));
      s.remote = IpAddr::FromKernel(v6, reinterpret_cast<const uint8_t*>(diag->id.idiag_dst));
      s.local_port = ntohs(diag->id.idiag_sport);
      s.remote_port = ntohs(diag->id.idiag_dport);
      bool have_info = s.listening;
      int attr_len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*diag)));
      for (auto* a = reinterpret_cast<rtattr*>(diag + 1); RTA_OK(a, attr_len);
           a = RTA_NEXT(a, attr_len)) {
        if (a->rta_type == INET_DIAG_CGROUP_ID && RTA_PAYLOAD(a) >= sizeof(uint64_t)) {
          std::memcpy(&s.cgroup_id, RTA_DATA(a), sizeof(uint64_t));
        }
        if (a->rta_type != INET_DIAG_INFO) continue;
        constexpr size_t kNeed = offsetof(tcp_info, tcpi_bytes_received) + sizeof(uint64_t);
        if (RTA_PAYLOAD(a) < kNeed) continue;  // kernel older than the fields
        tcp_info info{};
        std::memcpy(&info, RTA_DATA(a), std::min<size_t>(RTA_PAYLOAD(a), sizeof(info)));
        s.counters.bytes_acked = info.tcpi_bytes_acked;
        s.counters.bytes_received = info.tcpi_bytes_received;
        have_info = true;
      }
      if (have_info) out->push_back(s);
    }
  }
  return "sock_diag dump did not end";
}

}  // namespace

namespace {

std::variant<std::vector<DiagSocket>, std::string> Dump(const std::string& netns_path,
                                                        uint32_t states) {
  std::string error;
  int raw = SocketIn(netns_path, &error);
  if (raw < 0) return error.empty() ? Errno("sock_diag socket") : error;
  Fd fd(raw);
  std::vector<DiagSocket> out;
  for (uint8_t family : {AF_INET, AF_INET6}) {
    std::string err = DumpFamily(fd.get(), family, states, &out);
    if (!err.empty()) return err;
  }
  return out;
}

}  // namespace

std::variant<std::vector<LiveCounters>, std::string> DumpEstablished(
    const std::string& netns_path) {
  auto r = Dump(netns_path, 1u << kTcpEstablished);
  if (auto* err = std::get_if<std::string>(&r)) return *err;
  std::vector<LiveCounters> out;
  for (const DiagSocket& s : std::get<std::vector<DiagSocket>>(r)) out.push_back(s.counters);
  return out;
}

std::variant<std::vector<DiagSocket>, std::string> DumpSockets(const std::string& netns_path) {
  return Dump(netns_path, 1u << kTcpEstablished | 1u << kTcpListen);
}

}  // namespace podtap
