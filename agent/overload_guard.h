// The agent's CPU budget (--max-cpu). Parsing socket data is the agent's only cost that grows
// with the node's request rate; when the agent's own CPU use stays above the budget, HTTP capture
// is shed from the busiest connections (TcpPipeline::Shed) until it fits, so that the agent
// never falls so far behind its cgroup's limit that the kernel's rings overflow and TCP records
// are lost too. TCP metrics stay exact throughout: they come from lifecycle events and socket
// counters, not from the socket data.
#pragma once

#include <cstdint>
#include <string>

namespace podtap {

class OverloadGuard {
 public:
  // `budget_cores`: CPU time per wall second the agent may use (1.0 = one core); 0 turns the
  // guard off.
  explicit OverloadGuard(double budget_cores) : budget_(budget_cores) {}

  // One reading each second or so: the process's CPU time (every thread) and the wall clock, in
  // ns. Returns the share of the last interval's socket data records to shed, 0 when within the
  // budget. The decision averages the two last intervals, so that one busy moment (a scrape of
  // many series) sheds nothing; it sheds down to kTarget of the budget; after a shed it waits
  // for two fresh intervals before it decides again.
  double Observe(uint64_t cpu_ns, uint64_t wall_ns);

  double budget() const { return budget_; }
  // CPU use, in cores, over the last two intervals (0 until two are known).
  double used() const { return used_; }

  static constexpr double kTarget = 0.8;
  // The least share shed at once, so that a small overshoot still makes progress.
  static constexpr double kMinShed = 0.1;

 private:
  double budget_;
  double used_ = 0;
  uint64_t last_cpu_ = 0, last_wall_ = 0;
  bool have_last_ = false;
  // CPU and wall time of the intervals since the last decision, at most two.
  uint64_t cpu_[2] = {}, wall_[2] = {};
  int intervals_ = 0;
};

// The CPU limit of the cgroup this process runs in, in cores: cgroup v2's cpu.max ("quota
// period"), or v1's cpu.cfs_quota_us / cpu.cfs_period_us; 0 when it has none ("max", -1).
// Arguments as for CgroupFileLine (agent/cgroup.h).
double CgroupCpuLimit(const std::string& proc_cgroup, const std::string& cgroup_root);

// --max-cpu's default ("auto"): this share of the cgroup's CPU limit, so that HTTP capture is
// shed before the kernel throttles the agent (and its rings overflow).
inline constexpr double kAutoCpuShare = 0.8;

}  // namespace podtap
