// Which builds of the socket data programs the loader tries, from the
// kernel features it probed (agent/kernel/probes.cc, bpf/compat.h).
#include "agent/kernel/probes.h"

#include <gtest/gtest.h>

#include <vector>

namespace podtap {
namespace {

using V = PayloadVariant;

KernelFeatures Features(bool task_storage, bool bpf_loop, bool rdonly_cast) {
  KernelFeatures f;
  f.ringbuf = true;
  f.task_storage = task_storage;
  f.bpf_loop = bpf_loop;
  f.rdonly_cast = rdonly_cast;
  return f;
}

TEST(PayloadCandidatesTest, EveryFeatureTriesTheFastestBuildFirstThenEachFallback) {
  EXPECT_EQ(PayloadCandidates(Features(true, true, true)),
            (std::vector<V>{V::kBtfCast, V::kProbeRead, V::kCompat}));
}

TEST(PayloadCandidatesTest, NoRdonlyCastKfuncStartsWithProbeReads) {
  // Debian 12's 6.1: task storage and bpf_loop, no bpf_rdonly_cast in its BTF.
  EXPECT_EQ(PayloadCandidates(Features(true, true, false)),
            (std::vector<V>{V::kProbeRead, V::kCompat}));
}

TEST(PayloadCandidatesTest, NoBpfLoopOrNoTaskStorageLeavesOnlyCompat) {
  EXPECT_EQ(PayloadCandidates(Features(true, false, true)), (std::vector<V>{V::kCompat}));
  EXPECT_EQ(PayloadCandidates(Features(false, true, true)), (std::vector<V>{V::kCompat}));
  EXPECT_EQ(PayloadCandidates(Features(false, false, false)), (std::vector<V>{V::kCompat}));
}

TEST(PayloadCandidatesTest, NamesAreTheFlagValues) {
  EXPECT_STREQ(PayloadVariantName(V::kBtfCast), "btf_cast");
  EXPECT_STREQ(PayloadVariantName(V::kProbeRead), "probe_read");
  EXPECT_STREQ(PayloadVariantName(V::kCompat), "compat");
  EXPECT_STREQ(PayloadVariantName(V::kAuto), "auto");
}

}  // namespace
}  // namespace podtap
