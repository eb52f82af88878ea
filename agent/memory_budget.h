// Sizes what grows with the node's traffic from one memory limit (the
// agent's cgroup's, or --memory-limit), so that past it the agent refuses
// connections and counts them (podtap_connections_untracked_total
// {reason="table_full"}) instead of being killed by the kernel's OOM killer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace podtap {

// The most each ring takes by default: a node with kRingCpus CPUs or more.
struct MemoryPlan {
  size_t max_connections = 262144;
  uint32_t ringbuf_bytes = 4u << 20;
  uint32_t payload_ringbuf_bytes = 8u << 20;
};

// Every CPU's programs write into the same two rings, which the agent drains
// from one thread, so what a burst leaves in them before the next drain grows
// with the CPUs writing: by default each ring has this much per CPU, rounded up
// to a power of two, up to MemoryPlan{}'s size (reached at kRingCpus CPUs).
inline constexpr uint32_t kRingbufBytesPerCpu = 512u << 10;
inline constexpr uint32_t kPayloadRingbufBytesPerCpu = 1u << 20;
inline constexpr unsigned kRingCpus = 8;

// The defaults of a node with `cpus` CPUs online: the rings by kRingbufBytesPerCpu
// and kPayloadRingbufBytesPerCpu, the table at MemoryPlan{}'s size.
MemoryPlan DefaultPlan(unsigned cpus);

// One tracked socket: its share of the agent's memory as bench/memory.py
// measured it (3,423 bytes: table entry, parser, series and query window
// entries; docs/benchmarks.md) plus its kernel map entries (socks 112 and
// verdicts 104 bytes). Since parsers are lent between messages the benchmark
// measures 1,724; the earlier figure stays as margin for connections that are
// mid-message, HTTP/2 or TLS, which it does not make.
inline constexpr uint64_t kBytesPerSocket = 3640;
// The agent at rest without its ring buffers (47.5 MiB idle, of which 24 MiB
// are the rings' pages) and the kernel maps whose size does not follow the
// connection limit (ssl_conns, closed_socks, pending_closes: 7.6 MiB).
inline constexpr uint64_t kFixedBytes = uint64_t{32} << 20;
// Loading the socket data programs: the kernel's verifier holds up to 145
// MiB of kernel memory, charged to the agent's cgroup, for the second it
// takes (measured with memory.kmem.max_usage_in_bytes on 6.18; freed once
// the programs are loaded), on top of the agent's own ~15 MiB then.
inline constexpr uint64_t kLoadPeakBytes = uint64_t{160} << 20;
// Fewer than this and the agent is not worth running: the plan keeps it and
// says the limit is too small.
inline constexpr size_t kMinConnections = 1024;

// The plan for `limit` bytes: the rings at most 1/16 of it, and half of what
// is left after the fixed part for connections; the other half is for the
// series (capped per family), the query window and the scrapes' snapshots.
// Never more than `defaults`. `limit` 0: the defaults. The connections' share
// counts the rings at the most they may take under `limit` (MemoryPlan{}'s
// sizes at most), whatever `defaults` holds, so that every node given one
// limit tracks as many connections, however many CPUs it has.
MemoryPlan PlanMemory(uint64_t limit, const MemoryPlan& defaults);

// The smallest limit `plan` fits in: the load-time peak, or at rest its
// rings and kMinConnections, whichever is more. A limit below it is too
// small for the agent, which says so at start.
uint64_t SmallestLimitBytes(const MemoryPlan& plan);

// The memory limit of the cgroup this process runs in: cgroup v2's
// memory.max, or v1's memory.limit_in_bytes; 0 when it has none (or "max").
// `proc_cgroup` is /proc/self/cgroup's text; files are looked up under
// `cgroup_root` (the v1 memory hierarchy under memory/, v2 at the root or,
// on hybrid hosts, under unified/).
uint64_t CgroupMemoryLimit(const std::string& proc_cgroup, const std::string& cgroup_root);

// "536870912", "512Mi", "2Gi", "64M" (Kubernetes quantities, binary and
// decimal); nullopt when it is none of these.
std::optional<uint64_t> ParseByteQuantity(std::string_view text);

}  // namespace podtap
