#include "exporter/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace podtap {

ListenSpec ParseListenAddress(std::string_view flag) {
  ListenSpec spec;
  const size_t colon = flag.rfind(':');
  if (colon == std::string_view::npos) {
    spec.error = "expected HOST:PORT, [IPV6]:PORT or :PORT";
    return spec;
  }
  const std::string_view host = flag.substr(0, colon);
  const std::string_view port_text = flag.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    spec.error = "port must be a number from 0 to 65535";
    return spec;
  }
  if (host.empty()) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&spec.addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    a->sin6_addr = in6addr_any;
    spec.len = sizeof(*a);
    spec.any = true;
    return spec;
  }
  if (host.front() == '[' && host.back() == ']') {
    const std::string literal(host.substr(1, host.size() - 2));
    auto* a = reinterpret_cast<sockaddr_in6*>(&spec.addr);
    if (inet_pton(AF_INET6, literal.c_str(), &a->sin6_addr) != 1) {
      spec.error = "\"" + literal + "\" is not an IPv6 address";
      return spec;
    }
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    spec.len = sizeof(*a);
    return spec;
  }
  const std::string literal(host);
  auto* a = reinterpret_cast<sockaddr_in*>(&spec.addr);
  if (inet_pton(AF_INET, literal.c_str(), &a->sin_addr) != 1) {
    spec.error = "\"" + literal +
                 "\" is not an IP address (use e.g. 127.0.0.1:4191, [::1]:4191, or :4191 for "
                 "all interfaces)";
    return spec;
  }
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<uint16_t>(port));
  spec.len = sizeof(*a);
  return spec;
}

std::string ErrnoText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) {
    text.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(text.front())));
  }
  return text;
}

int OpenListener(const ListenSpec& spec, std::string* error) {
  sockaddr_storage addr = spec.addr;
  socklen_t len = spec.len;
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && spec.any && errno == EAFNOSUPPORT) {
    // A kernel without IPv6: ":PORT" means every IPv4 interface.
    const uint16_t port = reinterpret_cast<const sockaddr_in6*>(&spec.addr)->sin6_port;
    addr = {};
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = port;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof(*a);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) {
    *error = ErrnoText(errno);
    return -1;
  }
  const int on = 1;
  const int off = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (addr.ss_family == AF_INET6 && spec.any) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    *error = ErrnoText(errno);
    close(fd);
    return -1;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

}  // namespace podtap
