// Listening sockets from the agent's listen flags: ":4191" (every interface, IPv4 and IPv6 on
// one socket, or IPv4 only where the kernel has no IPv6), "127.0.0.1:4191" or "[::1]:4191";
// port 0 picks a free port.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

namespace podtap {

struct ListenSpec {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool any = false;   // ":PORT": every interface, dual-stack when the kernel has IPv6
  std::string error;  // non-empty when the flag cannot be served
};

// The address a flag names, or the reason it names none (ListenSpec::error).
ListenSpec ParseListenAddress(std::string_view flag);
// Binds and listens, non-blocking; the socket, or -1 with `error` set.
int OpenListener(const ListenSpec& spec, std::string* error);
// The port `fd` is bound to; 0 when it cannot be read.
int BoundPort(int fd);
// strerror, starting lower-case to follow "cannot listen on X: ".
std::string ErrnoText(int err);

}  // namespace podtap
