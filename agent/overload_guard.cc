#include "agent/overload_guard.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "agent/cgroup.h"

namespace podtap {

double OverloadGuard::Observe(uint64_t cpu_ns, uint64_t wall_ns) {
  if (budget_ <= 0) return 0;
  if (!have_last_ || cpu_ns < last_cpu_ || wall_ns <= last_wall_) {
    have_last_ = true;
    last_cpu_ = cpu_ns;
    last_wall_ = wall_ns;
    return 0;
  }
  cpu_[intervals_ % 2] = cpu_ns - last_cpu_;
  wall_[intervals_ % 2] = wall_ns - last_wall_;
  last_cpu_ = cpu_ns;
  last_wall_ = wall_ns;
  if (++intervals_ < 2) return 0;
  used_ = static_cast<double>(cpu_[0] + cpu_[1]) / static_cast<double>(wall_[0] + wall_[1]);
  if (used_ <= budget_) return 0;
  intervals_ = 0;  // the shed shows in the intervals to come
  return std::clamp((used_ - kTarget * budget_) / used_, kMinShed, 1.0);
}

namespace {

// A whole number at the start of `text`, or nullopt; `rest` gets what follows it.
bool ParseInt(std::string_view text, int64_t* n, std::string_view* rest) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *n);
  if (ec != std::errc() || end == text.data()) return false;
  *rest = text.substr(static_cast<size_t>(end - text.data()));
  return true;
}

double Cores(int64_t quota, int64_t period) {
  return quota > 0 && period > 0 ? static_cast<double>(quota) / static_cast<double>(period) : 0;
}

}  // namespace

double CgroupCpuLimit(const std::string& proc_cgroup, const std::string& cgroup_root) {
  int64_t quota = 0, period = 0;
  std::string_view rest;
  const std::string v2 = CgroupFileLine(proc_cgroup, cgroup_root, "cpu", "", "cpu.max");
  if (!v2.empty() && v2.find(' ') != std::string::npos) {
    // v2: "max 100000" (no limit) or "50000 100000"
    if (!ParseInt(v2, &quota, &rest) || rest.empty() || rest[0] != ' ') return 0;
    return ParseInt(rest.substr(1), &period, &rest) ? Cores(quota, period) : 0;
  }
  const std::string q = CgroupFileLine(proc_cgroup, cgroup_root, "cpu", "cpu.cfs_quota_us", "");
  const std::string p = CgroupFileLine(proc_cgroup, cgroup_root, "cpu", "cpu.cfs_period_us", "");
  if (!ParseInt(q, &quota, &rest) || !ParseInt(p, &period, &rest)) return 0;
  return Cores(quota, period);
}

}  // namespace podtap
