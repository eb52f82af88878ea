// Tests the metric sources: every registered source's families, in registration order.
#include "agent/metrics/metric_sources.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace podtap {
namespace {

MetricFamily Named(std::string name) {
  MetricFamily f;
  f.name = std::move(name);
  return f;
}

MetricSources::Source Adds(std::string name) {
  return [name](Snapshot* s) { s->families.push_back(Named(name)); };
}

std::vector<std::string> Names(const Snapshot& s) {
  std::vector<std::string> names;
  for (const MetricFamily& f : s.families) names.push_back(f.name);
  return names;
}

TEST(MetricSourcesTest, AppendsEverySourceInRegistrationOrder) {
  MetricSources sources;
  Snapshot empty;
  sources.AppendTo(&empty);
  EXPECT_TRUE(empty.families.empty());
  sources.Register(Adds("b"));
  sources.Register(Adds("a"));
  Snapshot s;
  s.families.push_back(Named("first"));
  sources.AppendTo(&s);
  EXPECT_EQ(Names(s), (std::vector<std::string>{"first", "b", "a"}));
}

// Scrapes run on several threads at once, while a late component may still register.
TEST(MetricSourcesTest, AppendsConcurrentlyWithRegistration) {
  MetricSources sources;
  sources.Register(Adds("a"));
  std::vector<std::thread> scrapers;
  for (int t = 0; t < 4; t++) {
    scrapers.emplace_back([&sources] {
      for (int i = 0; i < 200; i++) {
        Snapshot s;
        sources.AppendTo(&s);
        ASSERT_FALSE(s.families.empty());
        EXPECT_EQ(s.families.front().name, "a");
      }
    });
  }
  for (int i = 0; i < 50; i++) sources.Register(Adds("late"));
  for (std::thread& t : scrapers) t.join();
  Snapshot s;
  sources.AppendTo(&s);
  EXPECT_EQ(s.families.size(), 51u);
}

}  // namespace
}  // namespace podtap
