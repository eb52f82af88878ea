// Turns raw ring-buffer records from bpf/tcp.bpf.c and bpf/sockdata.bpf.c into
// value types; the only userspace code that knows the kernel ABI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "agent/kernel/tcp_event.h"

namespace podtap {

struct DecodeError {
  std::string message;
};

using DecodedEvent = std::variant<TcpOpen, TcpClose, TcpConnectFail, PayloadEvent, DecodeError>;

// Captured payload bytes are appended to `arena` (the batch's byte store).
DecodedEvent DecodeEvent(const void* data, size_t size, std::vector<uint8_t>* arena);

}  // namespace podtap
