// Finding the libssl files that processes map, through a /proc laid out by the test.
#include "agent/tls_libs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace podtap {
namespace {

namespace fs = std::filesystem;

TEST(TlsLibsTest, LibsslPathInMapsLine) {
  EXPECT_EQ(LibsslPathInMapsLine("7f2a1c000000-7f2a1c05e000 r--p 00000000 fe:01 1311010      "
                                 "            /usr/lib/x86_64-linux-gnu/libssl.so.3"),
            "/usr/lib/x86_64-linux-gnu/libssl.so.3");
  EXPECT_EQ(
      LibsslPathInMapsLine("7f2a1c000000-7f2a1c05e000 r--p 00000000 fe:01 7 /lib/libssl.so.1.1"),
      "/lib/libssl.so.1.1");
  EXPECT_EQ(LibsslPathInMapsLine("7f2a1c000000-7f2a1c05e000 r--p 00000000 fe:01 7 "
                                 "/usr/lib/libcrypto.so.3"),
            "");
  EXPECT_EQ(LibsslPathInMapsLine("7ffd5c3f0000-7ffd5c411000 rw-p 00000000 00:00 0   [stack]"), "");
  EXPECT_EQ(LibsslPathInMapsLine("7f2a1c000000-7f2a1c05e000 r--p 00000000 fe:01 7 "
                                 "/usr/lib/libssl.so.3 (deleted)"),
            "");
  EXPECT_EQ(LibsslPathInMapsLine("7f2a1c000000-7f2a1c05e000 r--p 00000000 fe:01 7 "
                                 "/opt/app/libssl_helper.so"),
            "");
}

class TlsLibraryFinderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podtap-tls-libs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // Two container root filesystems, each with its own libssl file.
    for (const char* root : {"rootA", "rootB"}) {
      fs::create_directories(dir_ / root / "usr/lib");
      std::ofstream(dir_ / root / "usr/lib/libssl.so.3") << root;
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

  static std::string Map(const char* path) {
    return std::string("7f0000000000-7f0000001000 r-xp 00000000 fe:01 42 ") + path + "\n";
  }

  fs::path dir_;
};

TEST_F(TlsLibraryFinderTest, EachFileOnceAndNewProcessesOnly) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(10, "rootA", "/usr/sbin/nginx", Map("/usr/lib/libssl.so.3") + Map("/usr/lib/libc.so.6"));
  Process(11, "rootA", "/usr/sbin/nginx", Map("/usr/lib/libssl.so.3"));
  Process(12, "rootB", "/bin/sh", Map("/usr/lib/libc.so.6"));
  auto found = finder.FindNew();
  ASSERT_EQ(found.size(), 1u);  // pids 10 and 11 map one file, reached through either
  EXPECT_TRUE(found[0] == (dir_ / "proc/10/root/usr/lib/libssl.so.3").string() ||
              found[0] == (dir_ / "proc/11/root/usr/lib/libssl.so.3").string())
      << found[0];
  EXPECT_TRUE(finder.FindNew().empty());
  // pid 12 exec'd curl, which maps rootB's libssl: read again because its executable changed.
  Process(12, "rootB", "/usr/bin/curl", Map("/usr/lib/libssl.so.3"));
  found = finder.FindNew();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0], (dir_ / "proc/12/root/usr/lib/libssl.so.3").string());
  EXPECT_TRUE(finder.FindNew(/*all=*/true).empty());  // every file already returned
}

TEST_F(TlsLibraryFinderTest, LibraryLoadedLaterIsFoundByAFullScan) {
  TlsLibraryFinder finder((dir_ / "proc").string());
  Process(20, "rootB", "/usr/bin/python3", Map("/usr/lib/libc.so.6"));
  EXPECT_TRUE(finder.FindNew().empty());
  Process(20, "rootB", "/usr/bin/python3", Map("/usr/lib/libssl.so.3"));  // dlopen
  EXPECT_TRUE(finder.FindNew().empty());
  EXPECT_EQ(finder.FindNew(/*all=*/true).size(), 1u);
}

TEST_F(TlsLibraryFinderTest, MissingProcIsEmpty) {
  TlsLibraryFinder finder((dir_ / "nothing").string());
  EXPECT_TRUE(finder.FindNew(true).empty());
}

}  // namespace
}  // namespace podtap
