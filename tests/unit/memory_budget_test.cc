#include "agent/memory_budget.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "agent/overload_guard.h"

namespace podtap {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(MemoryPlan, NoLimitKeepsTheDefaults) {
  MemoryPlan d;
  MemoryPlan p = PlanMemory(0, d);
  EXPECT_EQ(p.max_connections, 262144u);
  EXPECT_EQ(p.ringbuf_bytes, 4 * kMiB);
  EXPECT_EQ(p.payload_ringbuf_bytes, 8 * kMiB);
}

TEST(MemoryPlan, TheDaemonSetsLimitFitsItsTableInsteadOfOomingAt262144) {
  MemoryPlan p = PlanMemory(512 * kMiB, MemoryPlan{});
  EXPECT_EQ(p.ringbuf_bytes, 4 * kMiB);
  EXPECT_EQ(p.payload_ringbuf_bytes, 8 * kMiB);
  EXPECT_EQ(p.max_connections, 67408u);  // (512 - 32 - 12) MiB / 2 / 3,640 bytes
  // The old fixed default needed far more than the limit; the plan's full table with the fixed
  // part and the rings leaves 40% of it for series, the query window and scrapes.
  EXPECT_GT(262144 * kBytesPerSocket, 512 * kMiB);
  const uint64_t full = kFixedBytes + 12 * kMiB + p.max_connections * kBytesPerSocket;
  EXPECT_LT(full, 512 * kMiB * 6 / 10);
}

TEST(MemoryPlan, ASmallLimitShrinksTheRingsAndTheTable) {
  MemoryPlan p = PlanMemory(64 * kMiB, MemoryPlan{});
  EXPECT_EQ(p.ringbuf_bytes, 1 * kMiB);
  EXPECT_EQ(p.payload_ringbuf_bytes, 2 * kMiB);
  EXPECT_EQ(p.max_connections, 4177u);
  // At rest it would fit, but loading the programs needs more than 64 MiB.
  EXPECT_GT(SmallestLimitBytes(p), 64 * kMiB);
  EXPECT_LE(SmallestLimitBytes(PlanMemory(256 * kMiB, MemoryPlan{})), 256 * kMiB);
}

TEST(MemoryPlan, NeverAboveTheDefaultsAndNeverBelowTheFloor) {
  MemoryPlan small{
      .max_connections = 5000, .ringbuf_bytes = 64 * 1024, .payload_ringbuf_bytes = 128 * 1024};
  MemoryPlan p = PlanMemory(64ull << 30, small);
  EXPECT_EQ(p.max_connections, 5000u);
  EXPECT_EQ(p.ringbuf_bytes, 64u * 1024);
  EXPECT_EQ(p.payload_ringbuf_bytes, 128u * 1024);
  MemoryPlan tiny = PlanMemory(16 * kMiB, MemoryPlan{});
  EXPECT_EQ(tiny.max_connections, kMinConnections);
  EXPECT_GT(SmallestLimitBytes(tiny), 16 * kMiB);  // the agent says the limit is too small
  EXPECT_GE(tiny.ringbuf_bytes, 4096u);
}

TEST(MemoryPlan, TheRingsFollowTheNodesCpusUpToTheirMost) {
  EXPECT_EQ(DefaultPlan(1).ringbuf_bytes, 512u * 1024);
  EXPECT_EQ(DefaultPlan(1).payload_ringbuf_bytes, 1 * kMiB);
  EXPECT_EQ(DefaultPlan(0).payload_ringbuf_bytes, 1 * kMiB);  // counted as one
  EXPECT_EQ(DefaultPlan(2).ringbuf_bytes, 1 * kMiB);
  EXPECT_EQ(DefaultPlan(2).payload_ringbuf_bytes, 2 * kMiB);
  EXPECT_EQ(DefaultPlan(3).ringbuf_bytes, 2 * kMiB);  // a power of two, rounded up
  EXPECT_EQ(DefaultPlan(3).payload_ringbuf_bytes, 4 * kMiB);
  for (unsigned cpus : {kRingCpus, 96u}) {
    EXPECT_EQ(DefaultPlan(cpus).ringbuf_bytes, MemoryPlan{}.ringbuf_bytes);
    EXPECT_EQ(DefaultPlan(cpus).payload_ringbuf_bytes, MemoryPlan{}.payload_ringbuf_bytes);
  }
  EXPECT_EQ(DefaultPlan(2).max_connections, MemoryPlan{}.max_connections);
  EXPECT_EQ(PlanMemory(0, DefaultPlan(2)).payload_ringbuf_bytes, 2 * kMiB);
}

TEST(MemoryPlan, ALimitGivesNodesOfAnyCpuCountOneTable) {
  MemoryPlan two = PlanMemory(256 * kMiB, DefaultPlan(2));
  MemoryPlan eight = PlanMemory(256 * kMiB, DefaultPlan(8));
  EXPECT_EQ(two.ringbuf_bytes, 1 * kMiB);
  EXPECT_EQ(two.payload_ringbuf_bytes, 2 * kMiB);
  EXPECT_EQ(eight.ringbuf_bytes, 4 * kMiB);
  EXPECT_EQ(eight.payload_ringbuf_bytes, 8 * kMiB);
  EXPECT_EQ(two.max_connections, 30535u);  // (256 - 32 - 12) MiB / 2 / 3,640 bytes
  EXPECT_EQ(eight.max_connections, 30535u);
}

class CgroupLimit : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ =
        std::filesystem::temp_directory_path() /
        ("podtap-cgroup-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
    std::filesystem::remove_all(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    std::filesystem::path p = root_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::filesystem::path root_;
};

TEST_F(CgroupLimit, V2MemoryMax) {
  Write("kubepods/pod1/c1/memory.max", "536870912\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/kubepods/pod1/c1\n", root_), 512 * kMiB);
}

TEST_F(CgroupLimit, V2InsideItsOwnNamespaceAndUnlimited) {
  Write("memory.max", "max\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/\n", root_), 0u);
  Write("memory.max", "67108864\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/\n", root_), 64 * kMiB);
}

TEST_F(CgroupLimit, V1MemoryHierarchyAndHybridHosts) {
  const std::string proc = "12:pids:/x\n9:memory:/podtap\n0::/podtap\n";
  Write("memory/podtap/memory.limit_in_bytes", "100663296\n");
  Write("unified/podtap/memory.max", "max\n");
  EXPECT_EQ(CgroupMemoryLimit(proc, root_), 96 * kMiB);  // v1's memory controller decides
  Write("memory/podtap/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "no limit"
  EXPECT_EQ(CgroupMemoryLimit(proc, root_), 0u);
}

TEST_F(CgroupLimit, V2OnAHybridHostUnderUnified) {
  Write("unified/agent/memory.max", "268435456\n");
  EXPECT_EQ(CgroupMemoryLimit("1:name=systemd:/\n0::/agent\n", root_), 256 * kMiB);
}

TEST_F(CgroupLimit, NothingReadableIsNoLimit) {
  EXPECT_EQ(CgroupMemoryLimit("", root_), 0u);
  EXPECT_EQ(CgroupMemoryLimit("garbage\n0::/missing\n", root_), 0u);
}

TEST_F(CgroupLimit, CpuV2QuotaOverPeriod) {
  Write("kubepods/pod1/c1/cpu.max", "100000 100000\n");  // the DaemonSet's limit: cpu "1"
  EXPECT_DOUBLE_EQ(CgroupCpuLimit("0::/kubepods/pod1/c1\n", root_), 1.0);
  Write("kubepods/pod1/c1/cpu.max", "50000 100000\n");
  EXPECT_DOUBLE_EQ(CgroupCpuLimit("0::/kubepods/pod1/c1\n", root_), 0.5);
  Write("kubepods/pod1/c1/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/kubepods/pod1/c1\n", root_), 0);
}

TEST_F(CgroupLimit, CpuV1QuotaAndPeriodFiles) {
  const std::string proc = "4:cpu,cpuacct:/podtap\n9:memory:/podtap\n";
  Write("cpu/podtap/cpu.cfs_quota_us", "250000\n");
  Write("cpu/podtap/cpu.cfs_period_us", "100000\n");
  EXPECT_DOUBLE_EQ(CgroupCpuLimit(proc, root_), 2.5);
  Write("cpu/podtap/cpu.cfs_quota_us", "-1\n");  // v1's "no limit"
  EXPECT_EQ(CgroupCpuLimit(proc, root_), 0);
}

TEST_F(CgroupLimit, CpuNothingReadableIsNoLimit) {
  EXPECT_EQ(CgroupCpuLimit("", root_), 0);
  EXPECT_EQ(CgroupCpuLimit("0::/missing\n", root_), 0);
  Write("bad/cpu.max", "100000 x\n");
  EXPECT_EQ(CgroupCpuLimit("0::/bad\n", root_), 0);
}

TEST(ByteQuantity, KubernetesForms) {
  EXPECT_EQ(ParseByteQuantity("536870912"), 512 * kMiB);
  EXPECT_EQ(ParseByteQuantity("512Mi"), 512 * kMiB);
  EXPECT_EQ(ParseByteQuantity("2Gi"), 2048 * kMiB);
  EXPECT_EQ(ParseByteQuantity("64M"), 64'000'000u);
  EXPECT_EQ(ParseByteQuantity("1k"), 1000u);
  EXPECT_FALSE(ParseByteQuantity(""));
  EXPECT_FALSE(ParseByteQuantity("Mi"));
  EXPECT_FALSE(ParseByteQuantity("12 Mi"));
  EXPECT_FALSE(ParseByteQuantity("12MB"));
  EXPECT_FALSE(ParseByteQuantity("-1"));
  EXPECT_FALSE(ParseByteQuantity("99999999999999999999Gi"));
  EXPECT_FALSE(ParseByteQuantity("20000000000Gi"));
}

}  // namespace
}  // namespace podtap
