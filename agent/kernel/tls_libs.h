// Finds the ELF files that carry the OpenSSL API (SSL_read, SSL_write) among those the node's
// processes map: a shared libssl, or an executable with OpenSSL or BoringSSL linked in (Node.js,
// Envoy, statically built services), and the Go programs with crypto/tls, so that the TLS
// plaintext probes can be attached to each file once. Files inside containers are reached through
// /proc/PID/root, so the agent needs no access to the containers' images.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace podtap {

// The functions the TLS probes attach to, in the order of the BPF entry programs
// (bpf/sockdata.bpf.c). The first two are required; the others are attached when the file
// defines them (BoringSSL has no _ex forms).
inline constexpr std::array<const char*, 5> kOpenSslFunctions = {
    "SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex", "SSL_do_handshake"};
inline constexpr size_t kOpenSslRequired = 2;

// Bit i set: the file defines kOpenSslFunctions[i] as a function, in its dynamic symbol table
// or its .symtab (0 for a file that is not ELF). std::nullopt: the file cannot be opened.
std::optional<uint32_t> OpenSslFunctionsIn(const std::string& path);

// The Go toolchain version ("go1.19.8") of a Go program with crypto/tls linked in: its
// .go.buildinfo section names the version (in the section since Go 1.18; through a pointer to
// runtime.buildVersion before), and its .gopclntab, which strip keeps, holds the name of
// crypto/tls.(*Conn).Read ("an unknown Go version" when the build info does not say). std::nullopt
// for any other file, or one that cannot be read.
std::optional<std::string> GoTlsVersionIn(const std::string& path);

// Whether the Go TLS probes cover programs built by this Go version: go1.17 and later, as the
// build info names them (the register ABI since 1.17, and the struct layout the probes read:
// tls.Conn's first field conn net.Conn, net.TCPConn's *netFD, poll.FD's Sysfd after its 16-byte
// fdMutex). Go 1.16 and older passed arguments on the stack.
bool GoVersionCovered(std::string_view version);

// The offsets, from the start of `code`, of the RET instructions in x86-64 machine code; nullopt
// when the bytes do not all decode as instructions (a RET could be missed).
std::optional<std::vector<uint64_t>> X86ReturnOffsets(std::span<const uint8_t> code);

// The [entry, end) addresses of the function `name` in the bytes of a .gopclntab section (the
// layout of Go 1.18 and later, 64-bit): its entry in the function table, and the next function's
// entry. nullopt when the table has no such function or is not of that layout.
std::optional<std::pair<uint64_t, uint64_t>> GoFunctionInPclntab(std::span<const uint8_t> pclntab,
                                                                 std::string_view name);

// The type hash the Go compiler of `version` writes into the type descriptor of the type named
// `link_name` ("*net.TCPConn"): the first 4 bytes, little endian, of md5 (Go 1.17, 1.18) or of
// SHA-256 with every bit inverted (Go 1.19 to 1.23: cmd/internal/notsha256) of the name. nullopt
// for other versions (Go 1.24's compiler hashes otherwise): their programs are covered only with
// their symbols, where the hash is read from the program itself.
std::optional<uint32_t> GoTypeHash(std::string_view version, std::string_view link_name);

// A function the Go TLS probes attach to: the file offsets of its entry and of each RET.
struct GoFunctionProbes {
  uint64_t entry = 0;
  std::vector<uint64_t> returns;
};

// Where the Go TLS probes go in one program: crypto/tls.(*Conn).Read (its entry and RETs: the
// bytes read are there at a RET), the entry of Write (its bytes are there at entry, and its
// record must not wait for its RET), and the type hash of *net.TCPConn in it (from its
// go:itab.*net.TCPConn,net.Conn symbol when it has a .symtab, else GoTypeHash of its version),
// which tells the probes a tls.Conn over TCP.
struct GoTlsProbes {
  GoFunctionProbes read;
  uint64_t write_entry = 0;
  uint32_t tcp_conn_hash = 0;
};

// The probes of a Go program with crypto/tls built by `version` (GoTlsVersionIn), or why it is
// not covered: the version or architecture (amd64 only), or functions not found or not decoded.
// Function addresses come from .symtab, or from .gopclntab in a stripped program.
std::variant<GoTlsProbes, std::string> GoTlsProbesIn(const std::string& path,
                                                     const std::string& version);

// True when `functions` holds every required function.
inline bool HasOpenSslApi(uint32_t functions) {
  const uint32_t required = (1u << kOpenSslRequired) - 1;
  return (functions & required) == required;
}

// The path of an executable file mapping in one line of /proc/PID/maps, or "" when the line maps
// something else (data, anonymous memory, a deleted file).
std::string ExecutablePathInMapsLine(const std::string& line);

// Whether `proc` (a procfs mount) numbers processes as the initial pid namespace does, as the
// kernel's BPF helpers do: the agent is in that namespace, and `proc` is a mount of it.
bool InitialPidNamespace(const std::string& proc);

class TlsLibraryFinder {
 public:
  // At most this many files without the OpenSSL API are remembered; beyond it a file is read
  // again each time a scan meets it.
  static constexpr size_t kMaxRemembered = 16384;

  // A file, by device and inode.
  using FileId = std::pair<dev_t, ino_t>;
  struct OpenSslFile {
    std::string path;  // under /proc/PID/root
    FileId id;
  };

  explicit TlsLibraryFinder(std::string proc = "/proc") : proc_(std::move(proc)) {}
  // Files with the OpenSSL API not returned before, one per file (device and inode). Reads the
  // maps of processes that are new or exec'd another program since the last call; `all` reads
  // every process's (a library loaded later with dlopen). A file's symbols are read once per
  // (device, inode, mtime, size); files without the API are remembered as such. Every file,
  // returned or remembered, is forgotten when a scan with `all` no longer meets it (its
  // processes exited, or it was replaced by another file at its path): gone() then names the
  // files returned before and the Go programs marked attached, whose probes are to be detached,
  // and a file met again later is read again.
  std::vector<OpenSslFile> FindNew(bool all = false);
  // As FindNew without `all`, but reads the maps of these processes only: those the kernel
  // reported as having called exec since the last look (the agent's exec events), in place of a
  // walk of every process. A pid that is gone is skipped. Forgets nothing: gone() is empty after.
  std::vector<OpenSslFile> FindIn(std::span<const pid_t> pids);
  // A file returned by FindNew, or a Go program marked attached, that the last FindNew with
  // `all` forgot; `path` is where it was found.
  struct GoneFile {
    FileId id;
    std::string path;
    bool go = false;
  };
  const std::vector<GoneFile>& gone() const { return gone_; }

  // Executable files mapped by the node's processes that do not carry the OpenSSL API, as
  // remembered now (Go programs the Go TLS probes are attached to are not among them).
  size_t without_openssl() const { return without_.size(); }
  // Of those, Go programs with crypto/tls (GoTlsVersionIn): their TLS is not decrypted.
  size_t go_tls_programs() const;
  // A Go program with crypto/tls the last FindNew met for the first time.
  struct GoProgram {
    std::string path;
    std::string version;
    FileId id;
  };
  const std::vector<GoProgram>& new_go_tls() const { return new_go_; }
  // The Go TLS probes are attached to this program: it is not read again while processes map
  // it (a file is probed once), nor counted in without_openssl() and go_tls_programs().
  void MarkGoAttached(const GoProgram& go);
  // Go programs the Go TLS probes are attached to, now.
  size_t go_attached() const { return go_files_.size(); }
  // Tries to read a mapped file that could not be opened, since the start.
  uint64_t unreadable() const { return unreadable_; }
  // Files whose symbols were read, since the start.
  uint64_t files_read() const { return files_read_; }

 private:
  struct Stamp {
    int64_t mtime_ns = 0;
    int64_t size = 0;
    uint64_t scan = 0;   // the last scan that met the file
    std::string go_tls;  // the Go version of a Go program with crypto/tls; "" otherwise
  };
  // The executable of the process at `base` (/proc/PID), "" when it cannot be read.
  std::string ExeOf(const std::string& base) const;
  // Reads one process's executable mappings: files with the OpenSSL API not returned before go
  // to `found`, Go programs with crypto/tls met for the first time to new_go_.
  void ReadProcess(const std::string& base, std::vector<OpenSslFile>* found);

  std::string proc_;
  // A file returned (the OpenSSL API is in it), or a Go program the Go TLS probes are attached
  // to: where it was found, and the last scan that met it.
  struct Probed {
    std::string path;
    uint64_t scan = 0;
  };
  std::map<FileId, Probed> files_;
  std::map<FileId, Probed> go_files_;
  std::vector<GoneFile> gone_;
  std::map<FileId, Stamp> without_;       // read: no OpenSSL API in them
  std::map<pid_t, std::string> scanned_;  // pid -> its executable when its maps were read
  std::vector<GoProgram> new_go_;
  uint64_t scan_ = 0;
  uint64_t unreadable_ = 0;
  uint64_t files_read_ = 0;
};

}  // namespace podtap
