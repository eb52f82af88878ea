// Turns raw ring-buffer records from bpf/tcp.bpf.c into TcpOpen / TcpClose /
// TcpConnectFail values; the only userspace code that knows the kernel ABI.
#pragma once

#include <cstddef>
#include <string>
#include <variant>

#include "agent/tcp_event.h"

namespace podtap {

struct DecodeError {
  std::string message;
};

using DecodedEvent = std::variant<TcpOpen, TcpClose, TcpConnectFail, DecodeError>;

DecodedEvent DecodeTcpEvent(const void* data, size_t size);

}  // namespace podtap
