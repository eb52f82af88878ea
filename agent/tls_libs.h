// Finds the ELF files that carry the OpenSSL API (SSL_read, SSL_write) among those the node's
// processes map: a shared libssl, or an executable with OpenSSL or BoringSSL linked in (Node.js,
// Envoy, statically built services), so that the TLS plaintext probes can be attached to each
// file once. Files inside containers are reached through /proc/PID/root, so the agent needs no
// access to the containers' images.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
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

// The Go toolchain version ("go1.19.8") of a Go program with crypto/tls linked in, which the TLS
// plaintext probes do not cover yet (issue #19): its .go.buildinfo section names the version (Go
// 1.18 and later; "go1.17 or older" before), and its .gopclntab, which strip keeps, holds the
// name of crypto/tls.(*Conn).Read. std::nullopt for any other file, or one that cannot be read.
std::optional<std::string> GoTlsVersionIn(const std::string& path);

// True when `functions` holds every required function.
inline bool HasOpenSslApi(uint32_t functions) {
  const uint32_t required = (1u << kOpenSslRequired) - 1;
  return (functions & required) == required;
}

// The path of an executable file mapping in one line of /proc/PID/maps, or "" when the line maps
// something else (data, anonymous memory, a deleted file).
std::string ExecutablePathInMapsLine(const std::string& line);

class TlsLibraryFinder {
 public:
  // At most this many files without the OpenSSL API are remembered; beyond it a file is read
  // again each time a scan meets it.
  static constexpr size_t kMaxRemembered = 16384;

  explicit TlsLibraryFinder(std::string proc = "/proc") : proc_(std::move(proc)) {}
  // Paths (under /proc/PID/root) of files with the OpenSSL API not returned before, one per file
  // (device and inode). Reads the maps of processes that are new or exec'd another program since
  // the last call; `all` reads every process's (a library loaded later with dlopen). A file's
  // symbols are read once per (device, inode, mtime, size); files without the API are
  // remembered as such, and forgotten when a scan with `all` no longer meets them.
  std::vector<std::string> FindNew(bool all = false);

  // Executable files mapped by the node's processes that do not carry the OpenSSL API, as
  // remembered now.
  size_t without_openssl() const { return without_.size(); }
  // Of those, Go programs with crypto/tls (GoTlsVersionIn): their TLS is not decrypted.
  size_t go_tls_programs() const;
  // The Go programs with crypto/tls the last FindNew met for the first time: (path, Go version).
  const std::vector<std::pair<std::string, std::string>>& new_go_tls() const { return new_go_; }
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
  using FileId = std::pair<dev_t, ino_t>;

  std::string proc_;
  std::set<FileId> files_;                // returned: the OpenSSL API is in them
  std::map<FileId, Stamp> without_;       // read: no OpenSSL API in them
  std::map<pid_t, std::string> scanned_;  // pid -> its executable when its maps were read
  std::vector<std::pair<std::string, std::string>> new_go_;
  uint64_t scan_ = 0;
  uint64_t unreadable_ = 0;
  uint64_t files_read_ = 0;
};

}  // namespace podtap
