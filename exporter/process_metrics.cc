// process_* metrics from /proc/self/stat, /proc/self/fd, /proc/self/limits
// and the boot time in /proc/stat.
#include "exporter/process_metrics.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "agent/metrics/metric_families.h"

namespace podtap {
namespace {

// A family of one unlabelled sample.
MetricFamily Single(const FamilyDef& def, double value) {
  MetricFamily f = NewFamily(def);
  Sample s;
  s.value = value;
  f.samples.push_back(std::move(s));
  return f;
}

double BootTimeSeconds(const std::string& proc_stat) {
  std::ifstream in(proc_stat);
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime" && in >> value) return value;
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

std::vector<MetricFamily> ProcessMetrics(const std::string& proc_self) {
  std::vector<MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));

  std::ifstream stat_file(proc_self + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces; the
  // fields after its closing parenthesis start at field 3 (state).
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream fields(stat.substr(paren + 2));
    std::vector<std::string> f((std::istream_iterator<std::string>(fields)),
                               std::istream_iterator<std::string>());
    // Field n of proc(5) is f[n - 3].
    if (f.size() >= 22) {
      const double utime = std::stod(f[14 - 3]);
      const double stime = std::stod(f[15 - 3]);
      const double start = std::stod(f[22 - 3]);
      const double vsize = std::stod(f[23 - 3]);
      const double rss = std::stod(f[24 - 3]);
      out.push_back(Single(process_metrics::kCpuSecondsTotal, (utime + stime) / ticks));
      out.push_back(Single(process_metrics::kResidentMemoryBytes, rss * page));
      out.push_back(Single(process_metrics::kVirtualMemoryBytes, vsize));
      const double boot = BootTimeSeconds(std::filesystem::path(proc_self).parent_path() / "stat");
      if (boot > 0) {
        out.push_back(Single(process_metrics::kStartTimeSeconds, boot + start / ticks));
      }
    }
  }

  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator(proc_self + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    fds++;
  }
  if (!ec) out.push_back(Single(process_metrics::kOpenFds, static_cast<double>(fds)));

  std::ifstream limits(proc_self + "/limits");
  std::string line;
  while (std::getline(limits, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream words(line.substr(14));
    std::string soft;
    words >> soft;
    if (soft != "unlimited" && !soft.empty()) {
      out.push_back(Single(process_metrics::kMaxFds, std::stod(soft)));
    }
  }
  return out;
}

}  // namespace podtap
