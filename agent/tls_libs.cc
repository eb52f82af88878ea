#include "agent/tls_libs.h"

#include <dirent.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string_view>

namespace podtap {

namespace {

// Bit of kOpenSslFunctions that `name` is: exactly, or with a version suffix ("SSL_read@@x").
uint32_t OpenSslBit(const char* name) {
  for (size_t i = 0; i < kOpenSslFunctions.size(); i++) {
    const size_t n = std::strlen(kOpenSslFunctions[i]);
    if (std::strncmp(name, kOpenSslFunctions[i], n) == 0 && (name[n] == '\0' || name[n] == '@')) {
      return 1u << i;
    }
  }
  return 0;
}

// The OpenSSL functions a symbol table section defines (an undefined entry is an import: a
// program linked against a shared libssl lists SSL_read too).
uint32_t OpenSslFunctionsInSection(Elf* elf, Elf_Scn* scn, const GElf_Shdr& sh) {
  uint32_t found = 0;
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (data == nullptr || sh.sh_entsize == 0) return 0;
  const size_t count = sh.sh_size / sh.sh_entsize;
  for (size_t i = 0; i < count; i++) {
    GElf_Sym sym;
    if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) break;
    if (sym.st_shndx == SHN_UNDEF || GELF_ST_TYPE(sym.st_info) != STT_FUNC) continue;
    const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
    if (name != nullptr && name[0] == 'S') found |= OpenSslBit(name);
  }
  return found;
}

}  // namespace

std::optional<uint32_t> OpenSslFunctionsIn(const std::string& path) {
  static const bool libelf_ready = elf_version(EV_CURRENT) != EV_NONE;
  if (!libelf_ready) return std::nullopt;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<uint32_t> found;
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  if (elf != nullptr) found = 0;  // a file that is not ELF carries no OpenSSL either
  if (elf != nullptr && elf_kind(elf) == ELF_K_ELF) {
    // The dynamic symbol table first (what a shared library or Node.js exports), then .symtab
    // (a statically linked program that was not stripped).
    for (const Elf64_Word type : {SHT_DYNSYM, SHT_SYMTAB}) {
      for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) != nullptr && sh.sh_type == type) {
          *found |= OpenSslFunctionsInSection(elf, scn, sh);
        }
      }
      if (HasOpenSslApi(*found)) break;
    }
  }
  if (elf != nullptr) elf_end(elf);
  close(fd);
  return found;
}

namespace {

constexpr char kGoBuildInfoMagic[] = "\xff Go buildinf:";
constexpr size_t kGoBuildInfoMagicLen = sizeof(kGoBuildInfoMagic) - 1;

// The version in a .go.buildinfo section: since Go 1.18 (flags bit 1) a length-prefixed string
// at offset 32; before, pointers into the program's data, not followed here.
std::optional<std::string> GoVersionInBuildInfo(const Elf_Data* data) {
  const auto* p = static_cast<const unsigned char*>(data->d_buf);
  const size_t n = data->d_size;
  if (p == nullptr || n < 32 || std::memcmp(p, kGoBuildInfoMagic, kGoBuildInfoMagicLen) != 0) {
    return std::nullopt;
  }
  if ((p[kGoBuildInfoMagicLen + 1] & 2) == 0) return std::string("go1.17 or older");
  uint64_t len = 0;
  size_t at = 32;
  for (int shift = 0; at < n && shift < 64; shift += 7) {
    const unsigned char b = p[at++];
    len |= uint64_t(b & 0x7f) << shift;
    if ((b & 0x80) == 0) break;
  }
  if (len == 0 || len > 64 || at + len > n) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(p + at), len);
}

}  // namespace

std::optional<std::string> GoTlsVersionIn(const std::string& path) {
  static const bool libelf_ready = elf_version(EV_CURRENT) != EV_NONE;
  if (!libelf_ready) return std::nullopt;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> version;
  bool tls = false;
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  size_t shstrndx = 0;
  if (elf != nullptr && elf_kind(elf) == ELF_K_ELF && elf_getshdrstrndx(elf, &shstrndx) == 0) {
    static constexpr std::string_view kTlsRead = "crypto/tls.(*Conn).Read";
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
      GElf_Shdr sh;
      if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type != SHT_PROGBITS) continue;
      const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
      if (name == nullptr) continue;
      const std::string_view section(name);
      const bool buildinfo = section == ".go.buildinfo";
      const bool pclntab = section.ends_with(".gopclntab");
      if (!buildinfo && !pclntab) continue;
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (data == nullptr || data->d_buf == nullptr) continue;
      if (buildinfo) {
        version = GoVersionInBuildInfo(data);
      } else {
        // Function names are NUL-terminated in the table: the method itself, not ReadFrom.
        const std::string_view bytes(static_cast<const char*>(data->d_buf), data->d_size);
        for (size_t at = bytes.find(kTlsRead); at != std::string_view::npos && !tls;
             at = bytes.find(kTlsRead, at + 1)) {
          tls = at + kTlsRead.size() < bytes.size() && bytes[at + kTlsRead.size()] == '\0';
        }
      }
    }
  }
  if (elf != nullptr) elf_end(elf);
  close(fd);
  if (!tls) return std::nullopt;
  return version.value_or("an unknown Go version");
}

size_t TlsLibraryFinder::go_tls_programs() const {
  return static_cast<size_t>(std::count_if(without_.begin(), without_.end(),
                                           [](const auto& f) { return !f.second.go_tls.empty(); }));
}

std::string ExecutablePathInMapsLine(const std::string& line) {
  // address perms offset dev inode pathname: the path is the first field starting with '/'.
  const size_t perms = line.find(' ');
  if (perms == std::string::npos || perms + 4 >= line.size() || line[perms + 3] != 'x') return "";
  const size_t slash = line.find('/');
  if (slash == std::string::npos) return "";
  std::string path = line.substr(slash);
  if (path.size() > 10 && path.compare(path.size() - 10, 10, " (deleted)") == 0) return "";
  return path;
}

std::vector<std::string> TlsLibraryFinder::FindNew(bool all) {
  std::vector<std::string> found;
  new_go_.clear();
  DIR* dir = opendir(proc_.c_str());
  if (dir == nullptr) return found;
  scan_++;
  std::map<pid_t, std::string> alive;
  while (dirent* d = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(d->d_name, &end, 10);
    if (end == d->d_name || *end != '\0' || pid <= 0) continue;
    const std::string base = proc_ + "/" + d->d_name;
    // A process read between fork and exec showed its parent's mappings: read it again once its
    // executable changes.
    char exe[4096];
    const ssize_t n = readlink((base + "/exe").c_str(), exe, sizeof(exe));
    std::string& seen = alive[static_cast<pid_t>(pid)];
    seen.assign(exe, n > 0 ? static_cast<size_t>(n) : 0);
    auto prev = scanned_.find(static_cast<pid_t>(pid));
    if (!all && prev != scanned_.end() && prev->second == seen) continue;
    std::ifstream maps(base + "/maps");
    std::string line;
    std::set<std::string> paths;
    while (std::getline(maps, line)) {
      std::string p = ExecutablePathInMapsLine(line);
      if (!p.empty()) paths.insert(std::move(p));
    }
    for (const std::string& p : paths) {
      const std::string path = base + "/root" + p;
      struct stat st {};
      if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      const FileId id{st.st_dev, st.st_ino};
      if (files_.count(id) != 0) continue;
      const int64_t mtime_ns =
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      auto known = without_.find(id);
      if (known != without_.end() && known->second.mtime_ns == mtime_ns &&
          known->second.size == st.st_size) {
        known->second.scan = scan_;
        continue;
      }
      const std::optional<uint32_t> functions = OpenSslFunctionsIn(path);
      files_read_++;
      if (!functions) {
        unreadable_++;
        continue;
      }
      if (HasOpenSslApi(*functions)) {
        if (known != without_.end()) without_.erase(known);
        files_.insert(id);
        found.push_back(path);
        continue;
      }
      Stamp stamp{mtime_ns, st.st_size, scan_, GoTlsVersionIn(path).value_or("")};
      if (!stamp.go_tls.empty()) new_go_.emplace_back(path, stamp.go_tls);
      if (known != without_.end()) {
        known->second = std::move(stamp);
      } else if (without_.size() < kMaxRemembered) {
        without_.emplace(id, std::move(stamp));
      }
    }
  }
  closedir(dir);
  // Forget processes that exited, so that a reused pid is read again; and, after reading every
  // process, the files no process maps any more.
  scanned_ = std::move(alive);
  if (all) std::erase_if(without_, [this](const auto& f) { return f.second.scan != scan_; });
  return found;
}

}  // namespace podtap
