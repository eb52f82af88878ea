// Tests that the process_* families are read from /proc/self with sane values.
#include "exporter/process_metrics.h"

#include <gtest/gtest.h>

#include <ctime>
#include <map>

namespace podtap {
namespace {

TEST(ProcessMetricsTest, AllSixFromProcSelf) {
  std::map<std::string, const MetricFamily*> by_name;
  const auto families = ProcessMetrics();
  for (const auto& f : families) by_name[f.name] = &f;
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                           "process_start_time_seconds"}) {
    ASSERT_TRUE(by_name.count(name)) << name;
    ASSERT_EQ(by_name[name]->samples.size(), 1u);
  }
  auto value = [&](const char* name) { return by_name[name]->samples[0].value; };
  EXPECT_EQ(by_name["process_cpu_seconds_total"]->type, MetricType::kCounter);
  EXPECT_GE(value("process_cpu_seconds_total"), 0);
  EXPECT_GT(value("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(value("process_virtual_memory_bytes"), value("process_resident_memory_bytes"));
  EXPECT_GE(value("process_open_fds"), 3);  // stdin, stdout, stderr
  EXPECT_GE(value("process_max_fds"), value("process_open_fds"));
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(value("process_start_time_seconds"), now + 1);
  EXPECT_GT(value("process_start_time_seconds"), now - 3600);
}

TEST(ProcessMetricsTest, UnreadableDirectoryGivesNoFamilies) {
  EXPECT_TRUE(ProcessMetrics("/nonexistent/self").empty());
}

}  // namespace
}  // namespace podtap
