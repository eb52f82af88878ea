// Loads and attaches the kernel programs (feature probing and fallbacks are
// decided here and nowhere else) and reads their ring buffer and counters.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

struct tcp_bpf;
struct ring_buffer;
struct bpf_link;
struct bpf_map;
struct bpf_program;
struct bpf_object_skeleton;

namespace podtap {

struct GoTlsProbes;

enum class ProbeMode { kAuto, kTpBtf, kTracepoint };

// Builds of the socket data programs (bpf/compat.h), best first. kAuto
// takes the best one the kernel's features allow, falling back to the next
// when it does not load, and to TCP metrics only when none does.
enum class PayloadVariant { kAuto, kBtfCast, kProbeRead, kCompat };

// "btf_cast", "probe_read", "compat" (or "auto").
const char* PayloadVariantName(PayloadVariant v);

// How the socket data programs see the syscalls: kSysExit, one program at tp_btf/sys_exit that
// reads the arguments from the task's saved registers (bpf_loop builds, where tp_btf loads);
// kPairs, an entry and an exit program on each syscall's own tracepoints, the entry's arguments
// kept for the exit by thread. kAuto tries kSysExit first.
enum class SyscallHook { kAuto, kSysExit, kPairs };
const char* SyscallHookName(SyscallHook h);  // "auto", "sys_exit", "pairs"

// What the running kernel offers the programs, probed before loading.
struct KernelFeatures {
  bool ringbuf = false;       // BPF ring buffer (5.8): required
  bool task_storage = false;  // task local storage + bpf_get_current_task_btf in tracepoints
  bool bpf_loop = false;      // bpf_loop helper (5.17)
  bool rdonly_cast = false;   // bpf_rdonly_cast kfunc in the kernel's BTF (6.2)
  // Set once the lifecycle program attached: tp_btf/inet_sock_set_state loaded.
  bool tp_btf = false;
};
KernelFeatures ProbeKernelFeatures();

// The variants the features allow, best first.
std::vector<PayloadVariant> PayloadCandidates(const KernelFeatures& f);

// The read/write-family syscalls whose data podtap follows: an entry program
// on syscalls/sys_enter_NAME each (attached by section name) and the one exit
// program on every syscalls/sys_exit_NAME.
inline constexpr const char* kTracedSyscalls[] = {
    "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "sendfile64"};

struct ProbeOptions {
  ProbeMode mode = ProbeMode::kAuto;
  uint32_t ringbuf_bytes = 4u << 20;  // power of two, multiple of the page size
  uint32_t max_sockets = 262144;      // kernel socket map entries
  // Socket data (read/write-family syscalls) for the protocol parsers.
  bool capture_payload = true;
  uint32_t prefix_len = 256;  // bytes captured per syscall, at most PODTAP_PAYLOAD_MAX
  uint32_t payload_ringbuf_bytes = 8u << 20;
  PayloadVariant payload_variant = PayloadVariant::kAuto;
  SyscallHook syscall_hook = SyscallHook::kAuto;
  // The exec program (TakeExecs), for the TLS library finder; off, it is not loaded, so that no
  // map fills and counts exec_map_full with no one to empty it.
  bool exec_events = true;
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
  // Returns the number consumed, or a negative errno. After the rings it
  // reads the kernel's drop counters (drops()).
  int Poll(int timeout_ms);

  struct Drops {
    uint64_t ringbuf_full = 0;
    uint64_t sockmap_full = 0;
    uint64_t payload_ringbuf_full = 0;
    uint64_t syscall_map_full = 0;
    uint64_t h2_capture_full = 0;
    uint64_t h2_walk_lost = 0;
    uint64_t h2_walk_order = 0;
    uint64_t tls_unmapped = 0;
    uint64_t close_map_full = 0;
    uint64_t exec_map_full = 0;
    // Runs of the agent's programs the kernel skipped because a program was already running on
    // that CPU (the kernel's recursion_misses; read once a second).
    uint64_t program_nested = 0;
  };
  // The kernel's drop counters as the last Poll read them, each summed over
  // CPUs.
  const Drops& drops() const { return drops_; }

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

  // A probed file, by device and inode.
  using FileId = std::pair<dev_t, ino_t>;
  // Attaches the TLS plaintext probes (uprobes on SSL_read, SSL_write, their _ex forms and
  // SSL_do_handshake) to one file with the OpenSSL API, `id` at `path`; every process that maps
  // it is covered. An error names the file and the function. Fails when payload capture is off.
  std::string AttachTls(const std::string& path, FileId id);
  // Attaches the Go TLS probes (uprobes at the entry of crypto/tls.(*Conn).Write, and at the
  // entry and each RET of Read, found by GoTlsProbesIn) to one Go program, `id` at `path`, and
  // lets its *net.TCPConn type hash through. An error names the file and the offset. Fails when
  // payload capture is off.
  std::string AttachGoTls(const std::string& path, FileId id, const GoTlsProbes& probes);
  // Detaches the probes of one file (no process maps it any more), which lets the kernel free
  // it; false when none were attached to it.
  bool DetachTls(FileId id);
  // Deletes the Go TLS calls in flight of processes that exited (their goroutines parked in a
  // Read never return); the number deleted.
  size_t SweepGoTlsCalls();

  // "tp_btf" or "tracepoint": which program is attached.
  const std::string& mode() const { return mode_; }
  // The socket data build attached ("btf_cast", "probe_read", "compat"), or
  // "off" (payload capture off, or no build loads on this kernel).
  const std::string& payload_variant() const { return payload_variant_; }
  // "sys_exit" or "pairs" (SyscallHook), "off" without socket data programs.
  const std::string& syscall_hook() const { return syscall_hook_; }
  bool payload_attached() const { return payload_.skeleton != nullptr; }
  // The processes (by pid in the initial pid namespace) that called exec since the last call,
  // taken out of the kernel's map of them; std::nullopt when that may not be all of them (no
  // socket data object, or the map was full since the last call: counted in
  // drops().exec_map_full), and then the caller walks /proc. Control thread only.
  std::optional<std::vector<pid_t>> TakeExecs();
  const KernelFeatures& features() const { return features_; }

  // The socket data object that loaded, whichever build.
  struct PayloadObject {
    bpf_object_skeleton* skeleton = nullptr;
    std::function<void()> destroy;
    bpf_map* payload_events = nullptr;
    bpf_map* verdicts = nullptr;
    bpf_program* sys_exit = nullptr;
    bpf_program* ssl_exit = nullptr;
    // SSL_read, SSL_write, SSL_read_ex, SSL_write_ex, SSL_do_handshake.
    std::array<bpf_program*, 5> ssl_enter{};
    // crypto/tls.(*Conn).Read's entry and RET programs, Write's entry program, the type
    // hashes, the Reads in flight.
    bpf_program* go_read_enter = nullptr;
    bpf_program* go_read_ret = nullptr;
    bpf_program* go_write = nullptr;
    bpf_map* go_conn_types = nullptr;
    bpf_map* go_tls_calls = nullptr;
    bpf_map* execs = nullptr;
  };

 private:
  TcpProbes() = default;
  static std::variant<std::unique_ptr<TcpProbes>, std::string> TryAttach(const ProbeOptions& opts,
                                                                         bool btf, EventFn fn);
  // Loads and attaches one build; an error says why it did not.
  std::string AttachPayloadVariant(PayloadVariant v, SyscallHook hook, const ProbeOptions& opts);
  // The best build that loads; an error only when an explicitly chosen one fails.
  std::string AttachPayload(const ProbeOptions& opts);
  static int OnSample(void* ctx, void* data, size_t size);
  // Takes every event out of the pending closes map; the count or a negative errno.
  int DrainPendingCloses();
  // Reads every drop counter into drops_: one batch lookup for all of
  // them, since this runs on every turn of the event loop (a lookup per
  // counter, ten bpf syscalls a turn, was a sixth of an idle agent's event
  // thread). A kernel that refuses the batch gets a lookup per counter from
  // then on.
  void ReadDrops();
  // One per-CPU drop counter (enum podtap_drop), summed over CPUs.
  uint64_t SumDrop(uint32_t reason) const;
  // The kernel's count of runs it skipped, summed over every loaded program of both objects.
  // Says once in the log when the kernel refuses a program's statistics.
  uint64_t ProgramMisses();

  tcp_bpf* skel_ = nullptr;
  PayloadObject payload_;
  uint64_t exec_full_seen_ = 0;  // the exec map's full count at the last TakeExecs
  ring_buffer* rb_ = nullptr;
  // The exit program's link on each sys_exit_* tracepoint, and the TLS uprobes by file.
  std::vector<bpf_link*> exit_links_;
  std::map<FileId, std::vector<bpf_link*>> tls_links_;
  EventFn on_event_;
  std::string mode_;
  std::string payload_variant_ = "off";
  std::string syscall_hook_ = "off";
  KernelFeatures features_;
  Recovered recovered_;
  uint64_t full_at_drain_ = 0;  // the ring-full count at the last drain
  Drops drops_;
  bool drop_batch_ = true;             // batch lookups of the drop counters work
  std::vector<uint32_t> drop_keys_;    // for the batch lookup: a counter's index
  std::vector<uint64_t> drop_values_;  // for the batch lookup: each counter's value on each CPU
  std::chrono::steady_clock::time_point next_drain_{};
  std::chrono::steady_clock::time_point next_misses_{};
  bool misses_warned_ = false;
};

}  // namespace podtap
