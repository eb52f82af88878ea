// Reads the limits of the cgroup this process runs in, under cgroup v1 or v2.
#pragma once

#include <string>

namespace podtap {

// The first line of one of this process's cgroup files, or "" when it cannot be read.
// `proc_cgroup` is /proc/self/cgroup's text; files are looked up under `cgroup_root`: under v1,
// `v1_file` in the hierarchy of `v1_controller` (mounted at root/<controller>); under v2,
// `v2_file` at the root or, on hybrid hosts, under unified/.
std::string CgroupFileLine(const std::string& proc_cgroup, const std::string& cgroup_root,
                           const std::string& v1_controller, const std::string& v1_file,
                           const std::string& v2_file);

}  // namespace podtap
