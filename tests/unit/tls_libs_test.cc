// Finding the files that carry the OpenSSL API among those processes map, with real ELF files
// (a shared libssl, a program with OpenSSL linked in, Node.js, a library that only imports
// SSL_read) through a /proc laid out by the test.
#include "agent/kernel/tls_libs.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

namespace podtap {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kAllFive = (1u << kOpenSslFunctions.size()) - 1;

// The file this test process maps whose name starts with `prefix` (libssl.so.3 and
// libcurl.so.4 come with podtap_core's dependencies).
std::string MappedFile(const std::string& prefix) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const std::string p = ExecutablePathInMapsLine(line);
    if (!p.empty() && fs::path(p).filename().string().rfind(prefix, 0) == 0) return p;
  }
  return "";
}

TEST(TlsLibsTest, ExecutablePathInMapsLine) {
  EXPECT_EQ(ExecutablePathInMapsLine("7f2a1c000000-7f2a1c05e000 r-xp 00000000 fe:01 1311010  "
                                     "    /usr/lib/x86_64-linux-gnu/libssl.so.3"),
            "/usr/lib/x86_64-linux-gnu/libssl.so.3");
  EXPECT_EQ(
      ExecutablePathInMapsLine("55d0c0000000-55d0c2000000 r-xp 00000000 fe:01 7 /usr/bin/node"),
      "/usr/bin/node");
  // Data and read-only mappings of the same file, anonymous memory, a deleted file.
  EXPECT_EQ(ExecutablePathInMapsLine("7f2a1c000000-7f2a1c05e000 r--p 00000000 fe:01 7 "
                                     "/usr/lib/libssl.so.3"),
            "");
  EXPECT_EQ(ExecutablePathInMapsLine("7f2a1c000000-7f2a1c05e000 rw-p 00000000 fe:01 7 "
                                     "/usr/lib/libssl.so.3"),
            "");
  EXPECT_EQ(ExecutablePathInMapsLine("7ffd5c3f0000-7ffd5c411000 r-xp 00000000 00:00 0 [vdso]"), "");
  EXPECT_EQ(ExecutablePathInMapsLine("7f2a1c000000-7f2a1c05e000 r-xp 00000000 fe:01 7 "
                                     "/usr/lib/libssl.so.3 (deleted)"),
            "");
  EXPECT_EQ(ExecutablePathInMapsLine("garbage"), "");
}

TEST(TlsLibsTest, OpenSslFunctionsInRealFiles) {
  // OpenSSL 3 linked into a program: every function, from its .symtab alone.
  EXPECT_EQ(OpenSslFunctionsIn(PODTAP_TLS_STATIC_CLIENT), kAllFive);
  // The shared libssl, from its dynamic symbol table.
  const std::string libssl = MappedFile("libssl.so.");
  ASSERT_FALSE(libssl.empty());
  EXPECT_EQ(OpenSslFunctionsIn(libssl), kAllFive);
  // Node.js exports OpenSSL from its executable.
  EXPECT_EQ(OpenSslFunctionsIn("/usr/bin/node"), kAllFive) << "nodejs is installed by make deps";
  // libcurl calls SSL_read and SSL_write but imports them: not a file to probe.
  const std::string libcurl = MappedFile("libcurl");
  ASSERT_FALSE(libcurl.empty());
  EXPECT_EQ(OpenSslFunctionsIn(libcurl), 0u);
  // This test program: ELF, no OpenSSL.
  EXPECT_EQ(OpenSslFunctionsIn("/proc/self/exe"), 0u);
  EXPECT_FALSE(HasOpenSslApi(0));
  EXPECT_FALSE(HasOpenSslApi(1));  // SSL_read without SSL_write
  EXPECT_TRUE(HasOpenSslApi(3));   // BoringSSL: no _ex forms
}

TEST(TlsLibsTest, GoProgramsWithCryptoTls) {
  // Debian's Prometheus (make deps): a stripped Go program with crypto/tls; its version from
  // .go.buildinfo, crypto/tls from the function names in .gopclntab.
  const std::optional<std::string> prometheus = GoTlsVersionIn("/usr/bin/prometheus");
  ASSERT_TRUE(prometheus.has_value());
  EXPECT_EQ(prometheus->rfind("go1.", 0), 0u) << *prometheus;
  // runc is a Go program without crypto/tls; Node.js and this test are not Go.
  EXPECT_EQ(GoTlsVersionIn("/usr/sbin/runc"), std::nullopt);
  EXPECT_EQ(GoTlsVersionIn("/usr/bin/node"), std::nullopt);
  EXPECT_EQ(GoTlsVersionIn("/proc/self/exe"), std::nullopt);
  EXPECT_EQ(GoTlsVersionIn("/nonexistent/podtap"), std::nullopt);
}

TEST(GoTlsTest, VersionsCovered) {
  EXPECT_TRUE(GoVersionCovered("go1.19.8"));
  EXPECT_TRUE(GoVersionCovered("go1.18"));
  EXPECT_TRUE(GoVersionCovered("go1.21rc2"));
  EXPECT_TRUE(GoVersionCovered("go1.23.4"));
  // The register ABI came with Go 1.17; 1.16 passed arguments on the stack.
  EXPECT_TRUE(GoVersionCovered("go1.17.13"));
  EXPECT_FALSE(GoVersionCovered("go1.16"));
  EXPECT_FALSE(GoVersionCovered("go1.16.15"));
  EXPECT_FALSE(GoVersionCovered("devel go1.22-abcdef"));
  EXPECT_FALSE(GoVersionCovered("an unknown Go version"));
  EXPECT_FALSE(GoVersionCovered("go1."));
}

TEST(GoTlsTest, TypeHashByCompilerVersion) {
  // Go 1.19's compiler: notsha256 (SHA-256, every bit inverted) of the type's link name; the
  // value read from a real binary's go.itab.*net.TCPConn,net.Conn (GoTlsProgramTest below).
  EXPECT_EQ(GoTypeHash("go1.19.8", "*net.TCPConn"), 0xbc020cb9u);
  // Go 1.17's and 1.18's: md5.
  EXPECT_EQ(GoTypeHash("go1.18.10", "*net.TCPConn"), 0xb954d952u);
  EXPECT_EQ(GoTypeHash("go1.17.13", "*net.TCPConn"), 0xb954d952u);
  EXPECT_EQ(GoTypeHash("go1.23.4", "*net.TCPConn"), 0xbc020cb9u);
  // Other compilers: not known, and not guessed.
  EXPECT_EQ(GoTypeHash("go1.24.1", "*net.TCPConn"), std::nullopt);
  EXPECT_EQ(GoTypeHash("go1.16.15", "*net.TCPConn"), std::nullopt);
}

TEST(GoTlsTest, ReturnsInMachineCode) {
  // push rbp; ret; mov rbp,rsp; mov eax,0xc3 (a C3 byte that is not a RET); ret; int3
  const std::vector<uint8_t> code = {0x55, 0xc3, 0x48, 0x89, 0xe5, 0xb8,
                                     0xc3, 0x00, 0x00, 0x00, 0xc3, 0xcc};
  EXPECT_EQ(X86ReturnOffsets(code), (std::vector<uint64_t>{1, 10}));
  EXPECT_EQ(X86ReturnOffsets({}), std::vector<uint64_t>{});
  // An instruction cut short, and a byte that is no instruction in 64-bit mode: a RET after it
  // could be missed, so nothing is returned.
  EXPECT_EQ(X86ReturnOffsets(std::vector<uint8_t>{0xc3, 0xb8, 0xc3}), std::nullopt);
  EXPECT_EQ(X86ReturnOffsets(std::vector<uint8_t>{0x06, 0xc3}), std::nullopt);
}

TEST(GoTlsTest, PclntabOfAnotherLayout) {
  std::vector<uint8_t> table(128, 0);
  EXPECT_EQ(GoFunctionInPclntab(table, "crypto/tls.(*Conn).Read"), std::nullopt);
  table[0] = 0xfa;  // Go 1.16 and 1.17
  table[1] = table[2] = table[3] = 0xff;
  table[7] = 8;
  EXPECT_EQ(GoFunctionInPclntab(table, "crypto/tls.(*Conn).Read"), std::nullopt);
}

// A Go program with crypto/tls, built by the test with Debian's golang-go, with and without its
// symbol table (-ldflags=-s -w).
class GoTlsProgramTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/podtap-go-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ / "main.go")
        << "package main\n"
           "import (\"crypto/tls\"; \"fmt\"; \"net\")\n"
           "func main() {\n"
           "  c, err := net.Dial(\"tcp\", \"127.0.0.1:1\")\n"
           "  if err == nil { t := tls.Client(c, nil); t.Write(nil); t.Read(nil) }\n"
           "  fmt.Println(err)\n"
           "}\n";
    const std::string go = "cd " + dir_.string() +
                           " && env GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= "
                           "GOPROXY=off GOCACHE=" +
                           (dir_ / "cache").string() + " HOME=" + dir_.string() + " go build ";
    ASSERT_EQ(std::system((go + "-o plain main.go").c_str()), 0) << "golang-go: make deps";
    ASSERT_EQ(std::system((go + "-ldflags='-s -w' -o stripped main.go").c_str()), 0);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static GoTlsProbes ProbesOf(const std::string& name) {
    const std::string path = (dir_ / name).string();
    const std::optional<std::string> version = GoTlsVersionIn(path);
    EXPECT_EQ(version.value_or("").rfind("go1.19", 0), 0u) << version.value_or("none");
    std::variant<GoTlsProbes, std::string> found = GoTlsProbesIn(path, version.value_or(""));
    if (const auto* why = std::get_if<std::string>(&found)) ADD_FAILURE() << *why;
    return std::get_if<GoTlsProbes>(&found) != nullptr ? std::get<GoTlsProbes>(found)
                                                       : GoTlsProbes{};
  }

  // The byte at a file offset of the program `name`.
  static int ByteAt(const std::string& name, uint64_t offset) {
    std::ifstream f(dir_ / name, std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    return f.get();
  }

  static inline fs::path dir_;
};

TEST_F(GoTlsProgramTest, SymtabAndStrippedAgree) {
  const GoTlsProbes plain = ProbesOf("plain");
  const GoTlsProbes stripped = ProbesOf("stripped");
  // The function table of the stripped program gives the same functions as the symbol table:
  // the same entries, and RETs at the same places (the code is laid out alike).
  ASSERT_FALSE(plain.read.returns.empty());
  EXPECT_EQ(stripped.read.entry, plain.read.entry);
  EXPECT_EQ(stripped.read.returns, plain.read.returns);
  EXPECT_EQ(stripped.write_entry, plain.write_entry);
  EXPECT_NE(plain.write_entry, 0u);
  EXPECT_NE(plain.read.entry, plain.write_entry);
  for (const char* name : {"plain", "stripped"}) {
    for (uint64_t r : plain.read.returns) EXPECT_EQ(ByteAt(name, r), 0xc3) << name << " " << r;
  }
  // The hash in the program's go.itab.*net.TCPConn,net.Conn is the one Go 1.19's compiler
  // computes, which the stripped program is given.
  EXPECT_EQ(plain.tcp_conn_hash, GoTypeHash("go1.19", "*net.TCPConn"));
  EXPECT_EQ(stripped.tcp_conn_hash, plain.tcp_conn_hash);
}

TEST_F(GoTlsProgramTest, BuildInfoOfGo117) {
  // No Go 1.17 toolchain is packaged here: the Go 1.19 program's .go.buildinfo is rewritten in
  // the layout Go 1.17's linker wrote (no inline strings; at +16 a pointer to a string header,
  // here placed in the section itself, whose data pointer leads to "go1.17.13").
  fs::copy_file(dir_ / "plain", dir_ / "go117", fs::copy_options::overwrite_existing);
  std::fstream f(dir_ / "go117", std::ios::in | std::ios::out | std::ios::binary);
  Elf64_Ehdr eh{};
  f.read(reinterpret_cast<char*>(&eh), sizeof(eh));
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  f.seekg(static_cast<std::streamoff>(eh.e_shoff));
  f.read(reinterpret_cast<char*>(sections.data()),
         static_cast<std::streamsize>(sections.size() * sizeof(Elf64_Shdr)));
  const Elf64_Shdr& names = sections.at(eh.e_shstrndx);
  std::string strtab(names.sh_size, '\0');
  f.seekg(static_cast<std::streamoff>(names.sh_offset));
  f.read(strtab.data(), static_cast<std::streamsize>(strtab.size()));
  const Elf64_Shdr* info = nullptr;
  for (const Elf64_Shdr& sh : sections) {
    if (std::strcmp(strtab.c_str() + sh.sh_name, ".go.buildinfo") == 0) info = &sh;
  }
  ASSERT_NE(info, nullptr);
  ASSERT_GE(info->sh_size, 64u);
  const std::string version = "go1.17.13";
  uint8_t flags = 0;  // little endian, no inline strings
  const uint64_t words[4] = {info->sh_addr + 32, 0, info->sh_addr + 48, version.size()};
  f.seekp(static_cast<std::streamoff>(info->sh_offset + 15));
  f.write(reinterpret_cast<const char*>(&flags), 1);
  f.write(reinterpret_cast<const char*>(words), sizeof(words));
  f.write(version.data(), static_cast<std::streamsize>(version.size()));
  f.close();
  const std::string path = (dir_ / "go117").string();
  ASSERT_EQ(GoTlsVersionIn(path), version);
  std::variant<GoTlsProbes, std::string> found = GoTlsProbesIn(path, version);
  ASSERT_TRUE(std::holds_alternative<GoTlsProbes>(found)) << std::get<std::string>(found);
  const GoTlsProbes plain = ProbesOf("plain");
  EXPECT_EQ(std::get<GoTlsProbes>(found).read.returns, plain.read.returns);
  EXPECT_EQ(std::get<GoTlsProbes>(found).write_entry, plain.write_entry);
  // A pointer that leads nowhere: no version, not covered.
  const uint64_t nowhere = 8;
  std::fstream g(path, std::ios::in | std::ios::out | std::ios::binary);
  g.seekp(static_cast<std::streamoff>(info->sh_offset + 16));
  g.write(reinterpret_cast<const char*>(&nowhere), sizeof(nowhere));
  g.close();
  EXPECT_EQ(GoTlsVersionIn(path), "an unknown Go version");
}

TEST_F(GoTlsProgramTest, NotCovered) {
  const std::string plain = (dir_ / "plain").string();
  EXPECT_EQ(std::get<std::string>(GoTlsProbesIn(plain, "go1.16.15")),
            "Go version go1.16.15 is not covered");
  EXPECT_NE(std::get<std::string>(GoTlsProbesIn("/usr/bin/node", "go1.19")).find("not found"),
            std::string::npos);
  EXPECT_TRUE(std::holds_alternative<std::string>(GoTlsProbesIn("/nonexistent", "go1.19")));
}

TEST(GoTlsTest, DebianPrometheus) {
  // A stripped Go program built by Debian: found through its .gopclntab.
  const std::optional<std::string> version = GoTlsVersionIn("/usr/bin/prometheus");
  ASSERT_TRUE(version.has_value());
  std::variant<GoTlsProbes, std::string> found = GoTlsProbesIn("/usr/bin/prometheus", *version);
  ASSERT_TRUE(std::holds_alternative<GoTlsProbes>(found)) << std::get<std::string>(found);
  EXPECT_FALSE(std::get<GoTlsProbes>(found).read.returns.empty());
  EXPECT_NE(std::get<GoTlsProbes>(found).write_entry, 0u);
}

TEST(TlsLibsTest, NotElfAndMissing) {
  char tmpl[] = "/tmp/podtap-tls-notelf-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "#!/bin/sh\nSSL_read SSL_write\n", 29), 29);
  close(fd);
  EXPECT_EQ(OpenSslFunctionsIn(tmpl), 0u);
  unlink(tmpl);
  EXPECT_EQ(OpenSslFunctionsIn(tmpl), std::nullopt);
}

class TlsLibraryFinderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podtap-tls-libs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // Two container root filesystems: each has its own copy of the program with OpenSSL linked
    // in and of libcurl (which only imports SSL_read).
    for (const char* root : {"rootA", "rootB"}) {
      fs::create_directories(dir_ / root / "app");
      fs::copy_file(PODTAP_TLS_STATIC_CLIENT, dir_ / root / "app/server");
      fs::copy_file(MappedFile("libcurl"), dir_ / root / "app/libcurl.so.4");
    }
    fs::create_directories(dir_ / "proc");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A process of /proc: its root, executable and mappings.
  void Process(int pid, const char* root, const char* exe, const std::string& maps) {
    fs::path p = dir_ / "proc" / std::to_string(pid);
    fs::create_directories(p);
    fs::remove(p / "root");
    fs::remove(p / "exe");
    fs::create_directory_symlink(dir_ / root, p / "root");
    fs::create_symlink(exe, p / "exe");
    std::ofstream(p / "maps") << maps;
  }

  static std::string Map(const char* path, const char* perms = "r-xp") {
    return std::string("7f0000000000-7f0000001000 ") + perms + " 00000000 fe:01 42 " + path + "\n";
  }

  fs::path dir_;
};

TEST_F(TlsLibraryFinderTest, EachFileOnceAndNewProcessesOnly) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(10, "rootA", "/app/server", Map("/app/server") + Map("/app/libcurl.so.4"));
  Process(11, "rootA", "/app/server", Map("/app/server") + Map("/app/server", "r--p"));
  Process(12, "rootB", "/bin/sh", Map("/app/libcurl.so.4"));
  auto found = finder.FindNew();
  ASSERT_EQ(found.size(), 1u);  // pids 10 and 11 map one file, reached through either
  EXPECT_TRUE(found[0].path == (dir_ / "proc/10/root/app/server").string() ||
              found[0].path == (dir_ / "proc/11/root/app/server").string())
      << found[0].path;
  EXPECT_EQ(finder.without_openssl(), 2u);  // rootA's and rootB's libcurl
  EXPECT_EQ(finder.files_read(), 3u);
  EXPECT_TRUE(finder.FindNew().empty());
  // pid 12 exec'd rootB's server: read again because its executable changed.
  Process(12, "rootB", "/app/server", Map("/app/server"));
  found = finder.FindNew();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].path, (dir_ / "proc/12/root/app/server").string());
  // A full scan: every file already returned or remembered, none read again; rootB's libcurl
  // is mapped by no process any more and is forgotten.
  EXPECT_TRUE(finder.FindNew(/*all=*/true).empty());
  EXPECT_EQ(finder.files_read(), 4u);
  EXPECT_EQ(finder.without_openssl(), 1u);
  EXPECT_EQ(finder.unreadable(), 0u);
  EXPECT_TRUE(finder.gone().empty());
}

TEST_F(TlsLibraryFinderTest, ExecedProcessesAloneAreReadBetweenWalks) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(60, "rootA", "/bin/sh", Map("/app/libcurl.so.4"));
  EXPECT_TRUE(finder.FindNew().empty());  // the first walk
  EXPECT_EQ(finder.files_read(), 1u);
  // A process the kernel did not report is not read; one it reported is, and a reported pid
  // that is gone already is skipped.
  Process(61, "rootA", "/app/server", Map("/app/server"));
  EXPECT_TRUE(finder.FindIn({}).empty());
  EXPECT_EQ(finder.files_read(), 1u);
  const std::vector<pid_t> execs = {99, 61};
  const auto found = finder.FindIn(execs);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].path, (dir_ / "proc/61/root/app/server").string());
  EXPECT_EQ(finder.files_read(), 2u);
  EXPECT_TRUE(finder.gone().empty());
  // A later walk knows pid 61 as read with its executable: nothing is read again.
  EXPECT_TRUE(finder.FindNew().empty());
  EXPECT_EQ(finder.files_read(), 2u);
  // Reported again (it exec'd the same program): its files are known, none is read.
  EXPECT_TRUE(finder.FindIn(execs).empty());
  EXPECT_EQ(finder.files_read(), 2u);
}

TEST_F(TlsLibraryFinderTest, ProcWithoutTheInitialPidNamespace) {
  // A procfs whose pid 1 is not in the initial pid namespace (here: not a procfs at all)
  // cannot be named by the kernel's pids.
  EXPECT_FALSE(InitialPidNamespace((dir_ / "proc").string()));
  // This machine's own /proc is the initial namespace's exactly when this process is in it (the
  // e2e suites run there, and e2e_tls_embedded asserts the agent then uses exec events).
  char link[64];
  const ssize_t n = readlink("/proc/self/ns/pid", link, sizeof(link));
  const bool initial = n > 0 && std::string(link, static_cast<size_t>(n)) == "pid:[4026531836]";
  EXPECT_EQ(InitialPidNamespace("/proc"), initial);
}

TEST_F(TlsLibraryFinderTest, FileNoProcessMapsIsGoneAndFoundAgainLater) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(50, "rootA", "/app/server", Map("/app/server"));
  Process(51, "rootB", "/app/server", Map("/app/server"));
  ASSERT_EQ(finder.FindNew().size(), 2u);  // two files: one per root
  struct stat a {};
  ASSERT_EQ(stat((dir_ / "rootA/app/server").c_str(), &a), 0);
  // rootA's process exited: a scan of new processes alone does not tell.
  fs::remove_all(dir_ / "proc/50");
  EXPECT_TRUE(finder.FindNew().empty());
  EXPECT_TRUE(finder.gone().empty());
  // A full scan does, once, with where the file was found; rootB's file stays.
  EXPECT_TRUE(finder.FindNew(/*all=*/true).empty());
  ASSERT_EQ(finder.gone().size(), 1u);
  EXPECT_EQ(finder.gone()[0].id, std::make_pair(a.st_dev, a.st_ino));
  EXPECT_EQ(finder.gone()[0].path, (dir_ / "proc/50/root/app/server").string());
  EXPECT_FALSE(finder.gone()[0].go);
  EXPECT_TRUE(finder.FindNew(/*all=*/true).empty());
  EXPECT_TRUE(finder.gone().empty());
  // A later process maps it again: returned again, to be probed again.
  Process(52, "rootA", "/app/server", Map("/app/server"));
  const auto found = finder.FindNew();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].id, std::make_pair(a.st_dev, a.st_ino));
}

TEST_F(TlsLibraryFinderTest, FileChangedInPlaceIsReadAgain) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(20, "rootA", "/app/sh", Map("/app/libcurl.so.4"));
  EXPECT_TRUE(finder.FindNew().empty());
  EXPECT_EQ(finder.files_read(), 1u);
  EXPECT_TRUE(finder.FindNew(true).empty());
  EXPECT_EQ(finder.files_read(), 1u);  // the verdict is remembered
  // The same inode now holds a program with OpenSSL (new size and mtime).
  fs::copy_file(PODTAP_TLS_STATIC_CLIENT, dir_ / "rootA/app/libcurl.so.4",
                fs::copy_options::overwrite_existing);
  const auto found = finder.FindNew(true);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(finder.files_read(), 2u);
  EXPECT_EQ(finder.without_openssl(), 0u);
}

TEST_F(TlsLibraryFinderTest, LibraryLoadedLaterIsFoundByAFullScan) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(30, "rootB", "/usr/bin/python3", Map("/app/libcurl.so.4"));
  EXPECT_TRUE(finder.FindNew().empty());
  Process(30, "rootB", "/usr/bin/python3", Map("/app/libcurl.so.4") + Map("/app/server"));
  EXPECT_TRUE(finder.FindNew().empty());  // dlopen: same executable, not read again
  EXPECT_EQ(finder.FindNew(/*all=*/true).size(), 1u);
}

TEST_F(TlsLibraryFinderTest, GoProgramsWithCryptoTlsAreCountedAndNamedOnce) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  fs::create_symlink("/usr/bin/prometheus", dir_ / "rootA/app/prometheus");
  fs::create_symlink("/usr/sbin/runc", dir_ / "rootA/app/runc");
  Process(40, "rootA", "/app/prometheus", Map("/app/prometheus"));
  Process(41, "rootA", "/app/runc", Map("/app/runc"));
  EXPECT_TRUE(finder.FindNew().empty());
  EXPECT_EQ(finder.without_openssl(), 2u);
  EXPECT_EQ(finder.go_tls_programs(), 1u);
  ASSERT_EQ(finder.new_go_tls().size(), 1u);
  EXPECT_EQ(finder.new_go_tls()[0].path, (dir_ / "proc/40/root/app/prometheus").string());
  EXPECT_EQ(finder.new_go_tls()[0].version, GoTlsVersionIn("/usr/bin/prometheus"));
  // Remembered: a full scan names it no more, and counts it still.
  EXPECT_TRUE(finder.FindNew(/*all=*/true).empty());
  EXPECT_TRUE(finder.new_go_tls().empty());
  EXPECT_EQ(finder.go_tls_programs(), 1u);
  // Its process is gone: forgotten by the next full scan.
  fs::remove_all(dir_ / "proc/40");
  finder.FindNew(/*all=*/true);
  EXPECT_EQ(finder.go_tls_programs(), 0u);
}

TEST_F(TlsLibraryFinderTest, GoProgramAttachedWhileMapped) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  fs::create_symlink("/usr/bin/prometheus", dir_ / "rootA/app/prometheus");
  Process(40, "rootA", "/app/prometheus", Map("/app/prometheus"));
  EXPECT_TRUE(finder.FindNew().empty());
  ASSERT_EQ(finder.new_go_tls().size(), 1u);
  finder.MarkGoAttached(finder.new_go_tls()[0]);
  EXPECT_EQ(finder.go_attached(), 1u);
  EXPECT_EQ(finder.go_tls_programs(), 0u);
  EXPECT_EQ(finder.without_openssl(), 0u);
  // A second process maps the same file: not named again (its probes cover it).
  Process(41, "rootA", "/app/prometheus", Map("/app/prometheus"));
  fs::remove_all(dir_ / "proc/40");
  finder.FindNew(/*all=*/true);
  EXPECT_TRUE(finder.new_go_tls().empty());
  EXPECT_TRUE(finder.gone().empty());
  EXPECT_EQ(finder.go_attached(), 1u);
  // No process maps it any more: gone, as a Go program, and named again when one does.
  fs::remove_all(dir_ / "proc/41");
  finder.FindNew(/*all=*/true);
  ASSERT_EQ(finder.gone().size(), 1u);
  EXPECT_TRUE(finder.gone()[0].go);
  EXPECT_EQ(finder.gone()[0].path, (dir_ / "proc/40/root/app/prometheus").string());
  EXPECT_EQ(finder.go_attached(), 0u);
  Process(42, "rootA", "/app/prometheus", Map("/app/prometheus"));
  finder.FindNew();
  EXPECT_EQ(finder.new_go_tls().size(), 1u);
}

TEST_F(TlsLibraryFinderTest, MissingProcIsEmpty) {
  TlsLibraryFinder finder((dir_ / "nothing").string());
  EXPECT_TRUE(finder.FindNew(true).empty());
}

}  // namespace
}  // namespace podtap
