// Loads and attaches the kernel programs (feature probing and fallbacks are
// decided here and nowhere else) and reads their ring buffer and counters.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

struct tcp_bpf;
struct sockdata_bpf;
struct ring_buffer;
struct bpf_link;

namespace podtap {

enum class ProbeMode { kAuto, kTpBtf, kTracepoint };

struct ProbeOptions {
  ProbeMode mode = ProbeMode::kAuto;
  uint32_t ringbuf_bytes = 4u << 20;  // power of two, multiple of the page size
  uint32_t max_sockets = 262144;      // kernel socket map entries
  // Socket data (read/write-family syscalls) for the protocol parsers.
  bool capture_payload = true;
  uint32_t prefix_len = 256;  // bytes captured per syscall, at most PODTAP_PAYLOAD_MAX
  uint32_t payload_ringbuf_bytes = 8u << 20;
};

// Checks that must pass before loading: root, kernel BTF, tracefs and bpffs
// mounted (mounted here when missing). Returns an operator-facing error.
std::string PrepareSystem();

class TcpProbes {
 public:
  using EventFn = std::function<void(const void* data, size_t size)>;

  // Loads, attaches and starts the ring buffer; an error names the program
  // and the kernel's reason.
  static std::variant<std::unique_ptr<TcpProbes>, std::string> Attach(const ProbeOptions& opts,
                                                                      EventFn on_event);
  ~TcpProbes();
  TcpProbes(const TcpProbes&) = delete;
  TcpProbes& operator=(const TcpProbes&) = delete;

  // Waits up to timeout_ms for lifecycle events (or a payload backlog),
  // then drains every ring and then the pending closes map (closes the
  // lifecycle ring had no room for), handing each record to the callback.
  // Returns the number consumed, or a negative errno.
  int Poll(int timeout_ms);

  struct Drops {
    uint64_t ringbuf_full = 0;
    uint64_t sockmap_full = 0;
    uint64_t payload_ringbuf_full = 0;
    uint64_t syscall_map_full = 0;
    uint64_t h2_capture_full = 0;
    uint64_t h2_walk_lost = 0;
    uint64_t tls_unmapped = 0;
    uint64_t close_map_full = 0;
  };
  Drops ReadDrops() const;

  // Events taken from the pending closes map since the start, by kind.
  struct Recovered {
    uint64_t closes = 0;
    uint64_t connect_fails = 0;
  };
  const Recovered& recovered() const { return recovered_; }

  // Per-connection capture verdicts, the one thing userspace tells the
  // kernel. No-ops when payload capture is off.
  void StopCapture(uint64_t conn_id);
  void ClearVerdict(uint64_t conn_id);

  // Attaches the TLS plaintext probes (uprobes on SSL_read, SSL_write, their _ex forms and
  // SSL_do_handshake) to one OpenSSL libssl file; every process that maps it is covered. An
  // error names the file and the function. Fails when payload capture is off.
  std::string AttachTls(const std::string& path);

  // "tp_btf" or "tracepoint": which program is attached.
  const std::string& mode() const { return mode_; }

 private:
  TcpProbes() = default;
  static std::variant<std::unique_ptr<TcpProbes>, std::string> TryAttach(const ProbeOptions& opts,
                                                                         bool btf, EventFn fn);
  std::string AttachPayload(const ProbeOptions& opts);
  static int OnSample(void* ctx, void* data, size_t size);
  // Takes every event out of the pending closes map; the count or a negative errno.
  int DrainPendingCloses();
  // One per-CPU drop counter (enum podtap_drop), summed over CPUs.
  uint64_t SumDrop(uint32_t reason) const;

  tcp_bpf* skel_ = nullptr;
  sockdata_bpf* data_skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  std::vector<bpf_link*> tls_links_;
  EventFn on_event_;
  std::string mode_;
  Recovered recovered_;
  uint64_t full_at_drain_ = 0;  // the ring-full count at the last drain
  std::chrono::steady_clock::time_point next_drain_{};
};

}  // namespace podtap
