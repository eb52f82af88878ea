// Decoding of podtap_tcp_event records, including the payload arithmetic that
// takes the SYN and FIN sequence numbers out of the kernel's byte counters.
#include "agent/kernel/event_decoder.h"

#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "agent/kernel/capture.h"

extern "C" {
#include "bpf/podtap.h"
}

namespace podtap {

static_assert(kTlsKeyBit == PODTAP_TLS_KEY_BIT);

namespace {

Direction ToDirection(uint8_t d) {
  return d == PODTAP_DIR_INBOUND ? Direction::kInbound : Direction::kOutbound;
}

TcpError ConnectError(int err) {
  switch (err) {
    case ECONNREFUSED:
      return TcpError::kConnectionRefused;
    case ETIMEDOUT:
      return TcpError::kConnectTimeout;
    default:
      return TcpError::kOther;
  }
}

// Linux TCP states (include/net/tcp_states.h).
constexpr uint8_t kEstablished = 1;
constexpr uint8_t kCloseWait = 8;

TcpClose DecodeClose(const podtap_tcp_event& e) {
  TcpClose c;
  c.conn_id = e.conn_id;
  c.ts_ns = e.ts_ns;
  c.cgroup_id = e.cgroup_id;
  c.netns_ino = e.netns_ino;
  c.remote = IpAddr::FromKernel(e.family == AF_INET6, e.daddr);
  c.remote_port = e.dport;
  c.received_total = SubClamped(e.bytes_received, (e.flags & PODTAP_F_FIN_RECEIVED) ? 1 : 0);
  c.acked_total = SubClamped(e.bytes_acked, (e.flags & PODTAP_F_FIN_ACKED) ? 1 : 0);
  c.kernel_saw_open = (e.flags & PODTAP_F_UNTRACKED) == 0;
  if (c.kernel_saw_open) {
    c.open_ns = e.open_ns;
    c.direction = ToDirection(e.direction);
    c.base_acked = e.base_acked;
    c.base_received = e.base_received;
  }
  // A socket error means reset or timeout. Going to CLOSE straight from
  // ESTABLISHED or CLOSE_WAIT with no error means this side aborted: close()
  // with unread data or SO_LINGER 0, which sends a RST right after.
  bool aborted = e.old_state == kEstablished || e.old_state == kCloseWait;
  if (e.sk_err != 0 || aborted) {
    c.failed = true;
    c.err = e.sk_err != 0 ? e.sk_err : ECONNRESET;
    if (e.sk_err == 0 || e.sk_err == ECONNRESET || e.sk_err == EPIPE) {
      c.error = TcpError::kReset;
    } else {
      c.error = TcpError::kOther;
    }
  }
  return c;
}

DecodedEvent DecodePayload(const void* data, size_t size, std::vector<uint8_t>* arena) {
  constexpr size_t kHeader = offsetof(podtap_payload_event, data);
  if (size < kHeader) {
    return DecodeError{"short payload event: " + std::to_string(size) + " bytes"};
  }
  podtap_payload_event h;
  std::memcpy(&h, data, kHeader);
  const bool segmented = (h.flags & PODTAP_PF_SEGMENTS) != 0;
  const auto* bytes = static_cast<const uint8_t*>(data) + kHeader;
  if (h.captured > size - kHeader || h.captured > PODTAP_PAYLOAD_MAX || h.total_len <= 0 ||
      (!segmented && static_cast<uint64_t>(h.total_len) < h.captured) ||
      (segmented && !Capture::Valid({bytes, h.captured}, static_cast<uint64_t>(h.total_len))) ||
      (h.dir != PODTAP_DATA_SEND && h.dir != PODTAP_DATA_RECV)) {
    return DecodeError{"inconsistent payload event: captured " + std::to_string(h.captured) +
                       " of " + std::to_string(h.total_len) + " in a " + std::to_string(size) +
                       "-byte record" + (segmented ? " (segments)" : "")};
  }
  PayloadEvent p;
  p.conn_id = h.conn_id;
  p.ts_ns = h.ts_ns;
  p.dir = h.dir == PODTAP_DATA_SEND ? DataDir::kSend : DataDir::kRecv;
  p.total_len = static_cast<uint64_t>(h.total_len);
  p.offset = static_cast<uint32_t>(arena->size());
  p.captured = h.captured;
  p.segmented = segmented;
  p.tls_plaintext = (h.flags & PODTAP_PF_TLS) != 0;
  arena->insert(arena->end(), bytes, bytes + h.captured);
  return p;
}

DecodedEvent DecodeTcpEvent(const void* data, size_t size) {
  if (size < sizeof(podtap_tcp_event)) {
    return DecodeError{"short TCP event: " + std::to_string(size) + " bytes, want " +
                       std::to_string(sizeof(podtap_tcp_event))};
  }
  podtap_tcp_event e;
  std::memcpy(&e, data, sizeof(e));
  if (e.family != AF_INET && e.family != AF_INET6) {
    return DecodeError{"TCP event with address family " + std::to_string(e.family)};
  }
  switch (e.kind) {
    case PODTAP_EV_TCP_OPEN: {
      TcpOpen o;
      o.conn_id = e.conn_id;
      o.open_ns = e.open_ns;
      o.cgroup_id = e.cgroup_id;
      o.netns_ino = e.netns_ino;
      o.direction = ToDirection(e.direction);
      o.local = IpAddr::FromKernel(e.family == AF_INET6, e.saddr);
      o.remote = IpAddr::FromKernel(e.family == AF_INET6, e.daddr);
      o.local_port = e.sport;
      o.remote_port = e.dport;
      o.base_acked = e.base_acked;
      o.base_received = e.base_received;
      return o;
    }
    case PODTAP_EV_TCP_CLOSE:
      return DecodeClose(e);
    case PODTAP_EV_TCP_CONNECT_FAIL: {
      TcpConnectFail f;
      f.ts_ns = e.ts_ns;
      f.cgroup_id = e.cgroup_id;
      f.netns_ino = e.netns_ino;
      f.remote = IpAddr::FromKernel(e.family == AF_INET6, e.daddr);
      f.remote_port = e.dport;
      f.error = ConnectError(e.sk_err);
      f.err = e.sk_err;
      return f;
    }
    default:
      return DecodeError{"unknown TCP event kind " + std::to_string(e.kind)};
  }
}

}  // namespace

DecodedEvent DecodeEvent(const void* data, size_t size, std::vector<uint8_t>* arena) {
  uint32_t kind = 0;
  if (size < sizeof(kind)) return DecodeError{"empty record"};
  std::memcpy(&kind, data, sizeof(kind));
  if (kind == PODTAP_EV_PAYLOAD) return DecodePayload(data, size, arena);
  return DecodeTcpEvent(data, size);
}

}  // namespace podtap
