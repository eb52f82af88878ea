#include "agent/kernel/tls_libs.h"

#include <capstone/capstone.h>
#include <dirent.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
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

// The file offset of a virtual address in a loaded segment's file bytes, or nullopt.
std::optional<uint64_t> FileOffsetOf(Elf* elf, uint64_t vaddr, uint64_t len) {
  size_t n = 0;
  if (elf_getphdrnum(elf, &n) != 0) return std::nullopt;
  for (size_t i = 0; i < n; i++) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr || ph.p_type != PT_LOAD) continue;
    if (vaddr >= ph.p_vaddr && vaddr - ph.p_vaddr <= ph.p_filesz &&
        ph.p_filesz - (vaddr - ph.p_vaddr) >= len) {
      return vaddr - ph.p_vaddr + ph.p_offset;
    }
  }
  return std::nullopt;
}

// The version in a .go.buildinfo section: since Go 1.18 (flags bit 1) a length-prefixed string
// at offset 32; before, at offset 16 a pointer to runtime.buildVersion, a string header (data
// pointer, length) in the program's data, followed here for 64-bit little-endian programs.
std::optional<std::string> GoVersionInBuildInfo(Elf* elf, int fd, const Elf_Data* data) {
  const auto* p = static_cast<const unsigned char*>(data->d_buf);
  const size_t n = data->d_size;
  if (p == nullptr || n < 32 || std::memcmp(p, kGoBuildInfoMagic, kGoBuildInfoMagicLen) != 0) {
    return std::nullopt;
  }
  const unsigned char flags = p[kGoBuildInfoMagicLen + 1];
  if ((flags & 2) == 0) {
    const unsigned char ptr_size = p[kGoBuildInfoMagicLen];
    if (ptr_size != 8 || (flags & 1) != 0) return std::nullopt;
    uint64_t header_at = 0;
    uint64_t header[2] = {};  // data pointer, length
    std::memcpy(&header_at, p + 16, sizeof(header_at));
    const std::optional<uint64_t> at = FileOffsetOf(elf, header_at, sizeof(header));
    if (!at || pread(fd, header, sizeof(header), static_cast<off_t>(*at)) != sizeof(header) ||
        header[1] == 0 || header[1] > 64) {
      return std::nullopt;
    }
    std::string version(header[1], '\0');
    const std::optional<uint64_t> text = FileOffsetOf(elf, header[0], header[1]);
    if (!text || pread(fd, version.data(), header[1], static_cast<off_t>(*text)) !=
                     static_cast<ssize_t>(header[1])) {
      return std::nullopt;
    }
    return version;
  }
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
        version = GoVersionInBuildInfo(elf, fd, data);
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

namespace {

// The minor version of a Go release ("go1.19.8", "go1.21rc2": 19, 21), or nullopt.
std::optional<int> GoMinorVersion(std::string_view version) {
  if (!version.starts_with("go1.")) return std::nullopt;
  version.remove_prefix(4);
  int minor = 0;
  const auto [end, ec] = std::from_chars(version.data(), version.data() + version.size(), minor);
  if (ec != std::errc() || end == version.data()) return std::nullopt;
  return minor;
}

}  // namespace

bool GoVersionCovered(std::string_view version) {
  const std::optional<int> minor = GoMinorVersion(version);
  return minor && *minor >= 17;
}

std::optional<std::vector<uint64_t>> X86ReturnOffsets(std::span<const uint8_t> code) {
  csh handle = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) return std::nullopt;
  cs_insn* insn = cs_malloc(handle);
  std::vector<uint64_t> returns;
  const uint8_t* at = code.data();
  size_t left = code.size();
  uint64_t address = 0;
  while (insn != nullptr && cs_disasm_iter(handle, &at, &left, &address, insn)) {
    if (insn->id == X86_INS_RET) returns.push_back(insn->address);
  }
  if (insn != nullptr) cs_free(insn, 1);
  cs_close(&handle);
  if (insn == nullptr || left != 0) return std::nullopt;
  return returns;
}

namespace {

template <typename T>
bool ReadAt(std::span<const uint8_t> bytes, uint64_t at, T* out) {
  if (at > bytes.size() || bytes.size() - at < sizeof(T)) return false;
  std::memcpy(out, bytes.data() + at, sizeof(T));
  return true;
}

}  // namespace

std::optional<std::pair<uint64_t, uint64_t>> GoFunctionInPclntab(std::span<const uint8_t> pclntab,
                                                                 std::string_view name) {
  // runtime/symtab.go's pcHeader: magic, two pad bytes, minLC, ptrSize, then nfunc, nfiles,
  // textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset (8 bytes each).
  uint32_t magic = 0;
  uint64_t nfunc = 0, text_start = 0, funcname_off = 0, pcln_off = 0;
  if (!ReadAt(pclntab, 0, &magic) || (magic != 0xfffffff0 && magic != 0xfffffff1) ||
      pclntab.size() < 72 || pclntab[7] != 8 || !ReadAt(pclntab, 8, &nfunc) ||
      !ReadAt(pclntab, 24, &text_start) || !ReadAt(pclntab, 32, &funcname_off) ||
      !ReadAt(pclntab, 64, &pcln_off) || funcname_off >= pclntab.size() ||
      pcln_off >= pclntab.size()) {
    return std::nullopt;
  }
  // The function table: nfunc + 1 (entry offset, _func offset) pairs of uint32, the last one
  // the end of the text; each _func starts with its entry offset and its name's offset.
  const std::span<const uint8_t> table = pclntab.subspan(pcln_off);
  const std::span<const uint8_t> names = pclntab.subspan(funcname_off);
  if (nfunc >= table.size() / 8) return std::nullopt;
  for (uint64_t i = 0; i < nfunc; i++) {
    uint32_t entry = 0, func_off = 0, next = 0;
    int32_t name_off = 0;
    if (!ReadAt(table, i * 8, &entry) || !ReadAt(table, i * 8 + 4, &func_off) ||
        !ReadAt(table, i * 8 + 8, &next) || !ReadAt(table, uint64_t(func_off) + 4, &name_off) ||
        name_off < 0 || uint64_t(name_off) + name.size() >= names.size()) {
      continue;
    }
    const auto* n = reinterpret_cast<const char*>(names.data() + name_off);
    if (std::string_view(n, name.size()) == name && n[name.size()] == '\0' && next > entry) {
      return std::make_pair(text_start + entry, text_start + next);
    }
  }
  return std::nullopt;
}

std::optional<uint32_t> GoTypeHash(std::string_view version, std::string_view link_name) {
  const std::optional<int> minor = GoMinorVersion(version);
  if (!minor || *minor < 17 || *minor > 23) return std::nullopt;
  const bool md5 = *minor <= 18;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(link_name.data(), link_name.size(), digest, &len, md5 ? EVP_md5() : EVP_sha256(),
                 nullptr) != 1 ||
      len < 4) {
    return std::nullopt;
  }
  uint32_t hash = uint32_t(digest[0]) | uint32_t(digest[1]) << 8 | uint32_t(digest[2]) << 16 |
                  uint32_t(digest[3]) << 24;
  return md5 ? hash : ~hash;
}

namespace {

constexpr std::string_view kGoTlsRead = "crypto/tls.(*Conn).Read";
constexpr std::string_view kGoTlsWrite = "crypto/tls.(*Conn).Write";

// What a Go program's .symtab says: [entry, end) of the two functions, and its
// go:itab.*net.TCPConn,net.Conn (named go.itab.* before Go 1.20).
struct GoSymbols {
  std::optional<std::pair<uint64_t, uint64_t>> read, write;
  std::optional<uint64_t> tcp_conn_itab;
};

GoSymbols GoSymbolsIn(Elf* elf) {
  GoSymbols found;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type != SHT_SYMTAB || sh.sh_entsize == 0) {
      continue;
    }
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (data == nullptr) continue;
    for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
      GElf_Sym sym;
      if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) break;
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      if (name == nullptr || sym.st_shndx == SHN_UNDEF) continue;
      const std::string_view n(name);
      const auto range = std::make_pair(uint64_t(sym.st_value), sym.st_value + sym.st_size);
      if (n == kGoTlsRead && sym.st_size > 0) found.read = range;
      if (n == kGoTlsWrite && sym.st_size > 0) found.write = range;
      if (n == "go:itab.*net.TCPConn,net.Conn" || n == "go.itab.*net.TCPConn,net.Conn") {
        found.tcp_conn_itab = sym.st_value;
      }
    }
  }
  return found;
}

// The uprobe offsets of the function at [entry, end): its bytes read from the file and decoded.
std::variant<GoFunctionProbes, std::string> ProbesOf(Elf* elf, int fd,
                                                     std::pair<uint64_t, uint64_t> range,
                                                     std::string_view name) {
  const uint64_t size = range.second - range.first;
  const std::optional<uint64_t> offset = FileOffsetOf(elf, range.first, size);
  if (size > (1u << 20)) return std::string(name) + " is larger than 1 MiB";
  if (!offset) return std::string(name) + " is not in a loaded segment";
  std::vector<uint8_t> code(size);
  if (pread(fd, code.data(), size, static_cast<off_t>(*offset)) != static_cast<ssize_t>(size)) {
    return "cannot read " + std::string(name);
  }
  std::optional<std::vector<uint64_t>> returns = X86ReturnOffsets(code);
  if (!returns || returns->empty()) {
    return std::string(name) + (returns ? " has no RET instruction" : " does not decode");
  }
  GoFunctionProbes probes{*offset, std::move(*returns)};
  for (uint64_t& r : probes.returns) r += *offset;
  return probes;
}

}  // namespace

std::variant<GoTlsProbes, std::string> GoTlsProbesIn(const std::string& path,
                                                     const std::string& version) {
  if (!GoVersionCovered(version)) return "Go version " + version + " is not covered";
  static const bool libelf_ready = elf_version(EV_CURRENT) != EV_NONE;
  if (!libelf_ready) return std::string("libelf is not usable");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open it: " + std::string(std::strerror(errno));
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  std::variant<GoTlsProbes, std::string> result = std::string("not an ELF file");
  GElf_Ehdr eh;
  size_t shstrndx = 0;
  if (elf != nullptr && gelf_getehdr(elf, &eh) != nullptr && eh.e_machine != EM_X86_64) {
    result = std::string("not amd64: Go's TLS is decoded on amd64 only");
  } else if (elf != nullptr && gelf_getehdr(elf, &eh) != nullptr &&
             elf_getshdrstrndx(elf, &shstrndx) == 0) {
    GoSymbols symbols = GoSymbolsIn(elf);
    if (!symbols.read || !symbols.write) {
      // A stripped program: its function table.
      for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        const char* name =
            gelf_getshdr(scn, &sh) != nullptr ? elf_strptr(elf, shstrndx, sh.sh_name) : nullptr;
        Elf_Data* data = name != nullptr && std::string_view(name).ends_with(".gopclntab")
                             ? elf_getdata(scn, nullptr)
                             : nullptr;
        if (data == nullptr || data->d_buf == nullptr) continue;
        const std::span<const uint8_t> table(static_cast<const uint8_t*>(data->d_buf),
                                             data->d_size);
        symbols.read = GoFunctionInPclntab(table, kGoTlsRead);
        symbols.write = GoFunctionInPclntab(table, kGoTlsWrite);
      }
    }
    std::optional<uint32_t> hash;
    if (symbols.tcp_conn_itab) {
      // The itab's hash (after its interface and type pointers), as the compiler wrote it.
      const std::optional<uint64_t> at = FileOffsetOf(elf, *symbols.tcp_conn_itab + 16, 4);
      uint32_t h = 0;
      if (at && pread(fd, &h, sizeof(h), static_cast<off_t>(*at)) == sizeof(h)) hash = h;
    } else {
      hash = GoTypeHash(version, "*net.TCPConn");
    }
    if (!symbols.read || !symbols.write) {
      result = "crypto/tls.(*Conn).Read or Write not found in .symtab or .gopclntab";
    } else if (!hash) {
      result = std::string("the type hash of *net.TCPConn is not known");
    } else {
      auto read = ProbesOf(elf, fd, *symbols.read, kGoTlsRead);
      const uint64_t write_size = symbols.write->second - symbols.write->first;
      const std::optional<uint64_t> write = FileOffsetOf(elf, symbols.write->first, write_size);
      if (const auto* err = std::get_if<std::string>(&read)) {
        result = *err;
      } else if (!write) {
        result = std::string(kGoTlsWrite) + " is not in a loaded segment";
      } else {
        result = GoTlsProbes{std::get<GoFunctionProbes>(std::move(read)), *write, *hash};
      }
    }
  }
  if (elf != nullptr) elf_end(elf);
  close(fd);
  return result;
}

size_t TlsLibraryFinder::go_tls_programs() const {
  return static_cast<size_t>(std::count_if(without_.begin(), without_.end(),
                                           [](const auto& f) { return !f.second.go_tls.empty(); }));
}

void TlsLibraryFinder::MarkGoAttached(const GoProgram& go) {
  without_.erase(go.id);
  go_files_[go.id] = {go.path, scan_};
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

bool InitialPidNamespace(const std::string& proc) {
  // Ours is the initial one (PROC_PID_INIT_INO, include/linux/proc_ns.h, since Linux 3.8), and
  // `proc` is a mount of ours: its "self" is our pid. Pid 1's link would say it in one read, but
  // reading it takes ptrace access to pid 1, which a sandbox may refuse.
  char link[64];
  ssize_t n = readlink("/proc/self/ns/pid", link, sizeof(link));
  if (n <= 0 || std::string_view(link, static_cast<size_t>(n)) != "pid:[4026531836]") return false;
  n = readlink((proc + "/self").c_str(), link, sizeof(link));
  return n > 0 && std::string_view(link, static_cast<size_t>(n)) == std::to_string(getpid());
}

std::string TlsLibraryFinder::ExeOf(const std::string& base) const {
  char exe[4096];
  const ssize_t n = readlink((base + "/exe").c_str(), exe, sizeof(exe));
  return std::string(exe, n > 0 ? static_cast<size_t>(n) : 0);
}

void TlsLibraryFinder::ReadProcess(const std::string& base, std::vector<OpenSslFile>* found) {
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
    if (auto f = files_.find(id); f != files_.end()) {
      f->second.scan = scan_;
      continue;
    }
    if (auto g = go_files_.find(id); g != go_files_.end()) {
      g->second.scan = scan_;
      continue;
    }
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
      files_[id] = {path, scan_};
      found->push_back({path, id});
      continue;
    }
    Stamp stamp{mtime_ns, st.st_size, scan_, GoTlsVersionIn(path).value_or("")};
    if (!stamp.go_tls.empty()) new_go_.push_back({path, stamp.go_tls, id});
    if (known != without_.end()) {
      known->second = std::move(stamp);
    } else if (without_.size() < kMaxRemembered) {
      without_.emplace(id, std::move(stamp));
    }
  }
}

std::vector<TlsLibraryFinder::OpenSslFile> TlsLibraryFinder::FindIn(std::span<const pid_t> pids) {
  std::vector<OpenSslFile> found;
  new_go_.clear();
  gone_.clear();
  for (pid_t pid : pids) {
    const std::string base = proc_ + "/" + std::to_string(pid);
    scanned_[pid] = ExeOf(base);
    ReadProcess(base, &found);  // one that exited already maps nothing
  }
  return found;
}

std::vector<TlsLibraryFinder::OpenSslFile> TlsLibraryFinder::FindNew(bool all) {
  std::vector<OpenSslFile> found;
  new_go_.clear();
  gone_.clear();
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
    std::string& seen = alive[static_cast<pid_t>(pid)];
    seen = ExeOf(base);
    auto prev = scanned_.find(static_cast<pid_t>(pid));
    if (!all && prev != scanned_.end() && prev->second == seen) continue;
    ReadProcess(base, &found);
  }
  closedir(dir);
  // Forget processes that exited, so that a reused pid is read again; and, after reading every
  // process, the files no process maps any more.
  scanned_ = std::move(alive);
  if (all) {
    std::erase_if(without_, [this](const auto& f) { return f.second.scan != scan_; });
    for (auto* probed : {&files_, &go_files_}) {
      std::erase_if(*probed, [this, probed](const auto& f) {
        if (f.second.scan == scan_) return false;
        gone_.push_back({f.first, f.second.path, probed == &go_files_});
        return true;
      });
    }
  }
  return found;
}

}  // namespace podtap
