// The standard process_* metrics of the agent itself, read from /proc/self,
// named and typed as Prometheus' client libraries export them.
#pragma once

#include <string>
#include <vector>

#include "agent/metrics/snapshot.h"

namespace podtap {

// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds and
// process_start_time_seconds. `proc_self` is the directory to read
// ("/proc/self"; tests pass another); a file that cannot be read leaves its
// families out rather than reporting zeros.
std::vector<MetricFamily> ProcessMetrics(const std::string& proc_self = "/proc/self");

}  // namespace podtap
