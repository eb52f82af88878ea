// Reads the byte counters of live TCP connections through the kernel's socket
// diagnostics (NETLINK_SOCK_DIAG), one network namespace at a time, so that a
// long-lived connection's bytes show while it is open.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "agent/tcp_event.h"

namespace podtap {

// ESTABLISHED TCP sockets (IPv4 and IPv6) of the network namespace at
// `netns_path` ("" = the agent's own), or an error message.
std::variant<std::vector<LiveCounters>, std::string> DumpEstablished(const std::string& netns_path);

}  // namespace podtap
