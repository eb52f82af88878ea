#include "agent/memory_budget.h"

#include <algorithm>
#include <charconv>
#include <vector>

#include "agent/cgroup.h"

namespace podtap {
namespace {

uint32_t FloorPowerOfTwo(uint64_t n) {
  uint64_t p = 4096;  // the smallest ring the kernel takes
  while (p * 2 <= n && p * 2 <= (uint64_t{1} << 31)) p *= 2;
  return static_cast<uint32_t>(p);
}

uint32_t CeilPowerOfTwo(uint64_t n) {
  uint64_t p = 4096;
  while (p < n && p < (uint64_t{1} << 31)) p *= 2;
  return static_cast<uint32_t>(p);
}

// A limit file's value: 0 for none ("max", or v1's "no limit", which is
// LONG_MAX rounded down to a page).
uint64_t LimitValue(const std::string& text) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end == text.data() || n >= (uint64_t{1} << 62)) return 0;
  return n;
}

}  // namespace

MemoryPlan DefaultPlan(unsigned cpus) {
  const MemoryPlan most;
  const uint64_t n = std::max(cpus, 1u);
  MemoryPlan p;
  p.ringbuf_bytes = std::min(most.ringbuf_bytes, CeilPowerOfTwo(n * kRingbufBytesPerCpu));
  p.payload_ringbuf_bytes =
      std::min(most.payload_ringbuf_bytes, CeilPowerOfTwo(n * kPayloadRingbufBytesPerCpu));
  return p;
}

MemoryPlan PlanMemory(uint64_t limit, const MemoryPlan& defaults) {
  if (limit == 0) return defaults;
  const MemoryPlan most;
  const uint32_t payload_share = FloorPowerOfTwo(limit / 24);
  const uint32_t ring_share = FloorPowerOfTwo(limit / 48);
  MemoryPlan p;
  p.payload_ringbuf_bytes = std::min(defaults.payload_ringbuf_bytes, payload_share);
  p.ringbuf_bytes = std::min(defaults.ringbuf_bytes, ring_share);
  const uint64_t fixed = kFixedBytes + std::min(most.ringbuf_bytes, ring_share) +
                         std::min(most.payload_ringbuf_bytes, payload_share);
  const uint64_t for_connections = limit > fixed ? (limit - fixed) / 2 : 0;
  p.max_connections =
      std::min<uint64_t>(defaults.max_connections,
                         std::max<uint64_t>(kMinConnections, for_connections / kBytesPerSocket));
  return p;
}

uint64_t SmallestLimitBytes(const MemoryPlan& plan) {
  return std::max(kLoadPeakBytes, kFixedBytes + plan.ringbuf_bytes + plan.payload_ringbuf_bytes +
                                      2 * uint64_t{kMinConnections} * kBytesPerSocket);
}

uint64_t CgroupMemoryLimit(const std::string& proc_cgroup, const std::string& cgroup_root) {
  return LimitValue(
      CgroupFileLine(proc_cgroup, cgroup_root, "memory", "memory.limit_in_bytes", "memory.max"));
}

std::optional<uint64_t> ParseByteQuantity(std::string_view text) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  const std::string_view unit(end, text.data() + text.size() - end);
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {{"", 1},
                                                                     {"k", 1000},
                                                                     {"M", 1000 * 1000},
                                                                     {"G", 1000 * 1000 * 1000},
                                                                     {"Ki", uint64_t{1} << 10},
                                                                     {"Mi", uint64_t{1} << 20},
                                                                     {"Gi", uint64_t{1} << 30}};
  for (const auto& [name, scale] : kUnits) {
    if (unit != name) continue;
    if (n > UINT64_MAX / scale) return std::nullopt;
    return n * scale;
  }
  return std::nullopt;
}

}  // namespace podtap
