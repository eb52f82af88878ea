#include "agent/cgroup.h"

#include <fstream>
#include <sstream>

namespace podtap {
namespace {

std::string FirstLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

}  // namespace

std::string CgroupFileLine(const std::string& proc_cgroup, const std::string& cgroup_root,
                           const std::string& v1_controller, const std::string& v1_file,
                           const std::string& v2_file) {
  std::istringstream lines(proc_cgroup);
  std::string line;
  std::string v1, v2;
  bool has_v2 = false;
  while (std::getline(lines, line)) {
    // hierarchy-ID:controller-list:path
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      v2 = path;
      has_v2 = true;
      continue;
    }
    std::istringstream list(controllers);
    std::string c;
    while (std::getline(list, c, ',')) {
      if (c == v1_controller) v1 = path;
    }
  }
  if (!v1.empty()) return FirstLine(cgroup_root + "/" + v1_controller + v1 + "/" + v1_file);
  if (has_v2) {
    for (const std::string& base : {cgroup_root, cgroup_root + "/unified"}) {
      std::string value = FirstLine(base + (v2 == "/" ? "" : v2) + "/" + v2_file);
      if (!value.empty()) return value;
    }
  }
  return "";
}

}  // namespace podtap
