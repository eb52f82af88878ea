// Reads the byte counters of live TCP connections through the kernel's socket
// diagnostics (NETLINK_SOCK_DIAG), one network namespace at a time, so that a
// long-lived connection's bytes show while it is open.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "agent/kernel/tcp_event.h"

namespace podtap {

// ESTABLISHED TCP sockets (IPv4 and IPv6) of the network namespace at
// `netns_path` ("" = the agent's own), or an error message.
std::variant<std::vector<LiveCounters>, std::string> DumpEstablished(const std::string& netns_path);

// One socket of a full dump: what the agent needs to adopt a connection that
// was open before it started.
struct DiagSocket {
  LiveCounters counters;   // cookie and byte counters
  bool listening = false;  // LISTEN; otherwise ESTABLISHED
  IpAddr local, remote;
  uint16_t local_port = 0, remote_port = 0;
  uint64_t cgroup_id = 0;  // 0 when the kernel does not say
};

// ESTABLISHED and LISTEN TCP sockets of a namespace, as DumpEstablished.
std::variant<std::vector<DiagSocket>, std::string> DumpSockets(const std::string& netns_path);

}  // namespace podtap
