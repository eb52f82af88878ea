// Names and formatting of the TCP event value types.
#include "agent/kernel/tcp_event.h"

#include <arpa/inet.h>

#include <cstring>

namespace podtap {

const char* DirectionName(Direction d) { return d == Direction::kInbound ? "inbound" : "outbound"; }

const char* PeerName(Direction d) { return d == Direction::kInbound ? "src" : "dst"; }

const char* TcpErrorName(TcpError e) {
  switch (e) {
    case TcpError::kConnectionRefused:
      return "connection_refused";
    case TcpError::kConnectTimeout:
      return "connect_timeout";
    case TcpError::kReset:
      return "reset";
    case TcpError::kOther:
      break;
  }
  return "other";
}

const char* ErrnoName(int err) {
  if (err == 0) return "";
  // glibc names every Linux errno; Linkerd's proxy names 1 to 131 and calls the rest unknown.
  const char* name = err > 0 && err <= 131 ? strerrorname_np(err) : nullptr;
  return name != nullptr ? name : "UNKNOWN_ERRNO";
}

std::string IpAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v6) {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof(buf));
  }
  return buf;
}

IpAddr IpAddr::FromKernel(bool v6_family, const uint8_t* raw) {
  IpAddr a;
  if (!v6_family) {
    std::memcpy(a.bytes.data(), raw, 4);
    return a;
  }
  static constexpr uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(raw, kV4Mapped, sizeof(kV4Mapped)) == 0) {
    std::memcpy(a.bytes.data(), raw + 12, 4);
    return a;
  }
  a.v6 = true;
  std::memcpy(a.bytes.data(), raw, 16);
  return a;
}

std::optional<IpAddr> IpAddr::Parse(const std::string& text) {
  IpAddr a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

}  // namespace podtap
