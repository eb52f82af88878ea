// Kernel-independent value types for TCP lifecycle events, as the event
// decoder hands them to the rest of the agent.
#pragma once

#include <time.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace podtap {

// Kernel counters only grow; a value below what is subtracted would be a
// kernel or decoder bug, so clamp at 0 instead of wrapping to 2^64.
inline uint64_t SubClamped(uint64_t total, uint64_t sub) { return total > sub ? total - sub : 0; }

// Now, on the clock of the kernel's event timestamps (bpf_ktime_get_ns(): CLOCK_MONOTONIC).
inline uint64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return uint64_t(now.tv_sec) * 1'000'000'000 + uint64_t(now.tv_nsec);
}

enum class Direction : uint8_t { kOutbound = 0, kInbound = 1 };
inline constexpr int kDirectionCount = 2;

enum class TcpError : uint8_t { kConnectionRefused = 0, kConnectTimeout, kReset, kOther };
inline constexpr int kTcpErrorCount = 4;

const char* DirectionName(Direction d);
const char* PeerName(Direction d);  // "dst" for outbound, "src" for inbound
const char* TcpErrorName(TcpError e);
// The errno label as Linkerd's proxy writes it: the constant's name
// ("ECONNRESET"), "" for 0, "UNKNOWN_ERRNO" past the names Linkerd knows (1 to 131).
const char* ErrnoName(int err);

struct IpAddr {
  bool v6 = false;                  // IPv4-mapped IPv6 addresses are stored as IPv4
  std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4 bytes
  bool operator==(const IpAddr&) const = default;
  std::string ToString() const;
  // Dotted IPv4 or IPv6 text; nullopt when it is neither.
  static std::optional<IpAddr> Parse(const std::string& text);
  // An address as the kernel stores it: 4 bytes, or 16 for AF_INET6.
  static IpAddr FromKernel(bool v6_family, const uint8_t* raw);
};

struct TcpOpen {
  uint64_t conn_id = 0;
  uint64_t open_ns = 0;
  uint64_t cgroup_id = 0;
  uint32_t netns_ino = 0;
  Direction direction = Direction::kOutbound;
  IpAddr local, remote;
  uint16_t local_port = 0, remote_port = 0;
  // Kernel counters at ESTABLISHED: payload bytes are counted from here.
  uint64_t base_acked = 0, base_received = 0;
};

struct TcpClose {
  uint64_t conn_id = 0;
  uint64_t ts_ns = 0;
  uint64_t cgroup_id = 0;
  uint32_t netns_ino = 0;
  IpAddr remote;
  uint16_t remote_port = 0;
  // Kernel counters at close with our FIN / the peer's FIN taken out.
  uint64_t acked_total = 0, received_total = 0;
  // What the kernel remembered from the open. When `kernel_saw_open` is false
  // the socket predates the probes (or the kernel's socket map was full).
  bool kernel_saw_open = false;
  uint64_t open_ns = 0;
  Direction direction = Direction::kOutbound;
  uint64_t base_acked = 0, base_received = 0;
  bool failed = false;                // reset, timeout or socket error
  TcpError error = TcpError::kOther;  // meaningful when failed
  // The errno the connection ended with: the socket's error, or ECONNRESET
  // when this side aborted it (sent the reset); 0 for a clean close.
  int err = 0;
};

struct TcpConnectFail {
  uint64_t ts_ns = 0;
  uint64_t cgroup_id = 0;
  uint32_t netns_ino = 0;
  IpAddr remote;
  uint16_t remote_port = 0;
  TcpError error = TcpError::kOther;
  int err = 0;  // the socket's error (ECONNREFUSED, ETIMEDOUT, ...)
};

enum class DataDir : uint8_t { kSend = 0, kRecv = 1 };

// Bytes that crossed the socket API in one syscall. Only the first `captured`
// bytes were copied; they live in the batch's byte arena at `offset`.
struct PayloadEvent {
  uint64_t conn_id = 0;
  uint64_t ts_ns = 0;
  DataDir dir = DataDir::kSend;
  uint64_t total_len = 0;
  uint32_t offset = 0;
  uint32_t captured = 0;
  bool segmented = false;  // the captured bytes are segments (agent/kernel/capture.h), not a prefix
  bool tls_plaintext = false;  // bytes of SSL_read/SSL_write on the connection, not of a syscall
};

// Set in a connection id, it names the connection's TLS plaintext (its SSL_read/SSL_write bytes)
// in the kernel's verdict map, apart from its bytes on the wire (PODTAP_TLS_KEY_BIT).
inline constexpr uint64_t kTlsKeyBit = uint64_t{1} << 63;

// Kernel counters of an ESTABLISHED socket, as sock_diag reports them.
struct LiveCounters {
  uint64_t conn_id = 0;
  uint64_t bytes_acked = 0;
  uint64_t bytes_received = 0;
};

}  // namespace podtap
