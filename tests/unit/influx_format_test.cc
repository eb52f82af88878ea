// Tests the InfluxDB line protocol writer with a small parser of the
// protocol's escaping rules, on hostile label values.
#include "exporter/influx_format.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "tests/unit/hostile_snapshot.h"

namespace podtap {
namespace {

using testing::HostileSnapshot;
using testing::IsValidUtf8;

struct Point {
  std::string measurement;
  std::map<std::string, std::string> tags;
  std::map<std::string, double> fields;
  int64_t timestamp = 0;
};

// Splits at `sep` where it is not backslash-escaped, unescaping "\x" to "x".
std::vector<std::string> SplitUnescaped(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back() += s[++i];
    } else if (s[i] == sep) {
      out.emplace_back();
    } else {
      out.back() += s[i];
    }
  }
  return out;
}

// Finds the unescaped separators of "measurement,tags fields timestamp".
std::vector<std::string> Sections(const std::string& line) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < line.size(); i++) {
    if (line[i] == '\\' && i + 1 < line.size()) {
      out.back() += line[i];
      out.back() += line[++i];
    } else if (line[i] == ' ') {
      out.emplace_back();
    } else {
      out.back() += line[i];
    }
  }
  return out;
}

Point ParseLine(const std::string& line) {
  Point p;
  const auto sections = Sections(line);
  EXPECT_EQ(sections.size(), 3u) << line;
  if (sections.size() != 3) return p;
  // Split on unescaped commas while keeping escapes for the '=' split below.
  std::vector<std::string> head(1);
  for (size_t i = 0; i < sections[0].size(); i++) {
    const char c = sections[0][i];
    if (c == '\\' && i + 1 < sections[0].size()) {
      head.back() += c;
      head.back() += sections[0][++i];
    } else if (c == ',') {
      head.emplace_back();
    } else {
      head.back() += c;
    }
  }
  p.measurement = SplitUnescaped(head[0], '\0')[0];
  for (size_t i = 1; i < head.size(); i++) {
    const auto kv = SplitUnescaped(head[i], '=');
    EXPECT_EQ(kv.size(), 2u) << head[i];
    if (kv.size() == 2) p.tags[kv[0]] = kv[1];
  }
  for (const auto& field : SplitUnescaped(sections[1], ',')) {
    const size_t eq = field.rfind('=');
    p.fields[field.substr(0, eq)] = std::stod(field.substr(eq + 1));
  }
  p.timestamp = std::stoll(sections[2]);
  return p;
}

TEST(InfluxFormatTest, HostileValuesParseBack) {
  const std::string text = WriteInfluxLineProtocol(HostileSnapshot(), 1700000000123456789);
  EXPECT_TRUE(IsValidUtf8(text));
  std::vector<Point> points;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    ASSERT_NE(end, std::string::npos);
    points.push_back(ParseLine(text.substr(pos, end - pos)));
    pos = end + 1;
  }
  ASSERT_EQ(points.size(), 3u) << text;
  EXPECT_EQ(points[0].measurement, "request_total");
  EXPECT_EQ(points[0].tags.count("empty"), 0u);  // empty tags are left out
  // Newline and carriage return became spaces, backslash is doubled, and
  // the escaped comma, space and equals sign came back.
  const std::string authority = points[0].tags["authority"];
  EXPECT_EQ(authority.substr(0, 11), "a\"b\\c d e,f");
  EXPECT_NE(authority.find(" g=h|i#j"), std::string::npos);
  EXPECT_EQ(points[0].fields["counter"], 3);
  EXPECT_EQ(points[0].timestamp, 1700000000123456789);
  EXPECT_EQ(points[1].fields["gauge"], 2);
  EXPECT_EQ(points[2].measurement, "response_latency_ms");
  EXPECT_EQ(points[2].fields["count"], 4);
  EXPECT_EQ(points[2].fields["sum"], 31.5);
  EXPECT_EQ(points[2].fields["1"], 2);
  EXPECT_EQ(points[2].fields["10"], 3);
  EXPECT_EQ(points[2].fields["+Inf"], 4);
}

TEST(InfluxFormatTest, NonFiniteSamplesAreLeftOut) {
  Snapshot s;
  MetricFamily g;
  g.name = "g";
  g.type = MetricType::kGauge;
  g.samples = {{{}, 1.0 / 0.0, {}}, {{}, 5, {}}};
  s.families.push_back(g);
  EXPECT_EQ(WriteInfluxLineProtocol(s, 7), "g gauge=5 7\n");
}

}  // namespace
}  // namespace podtap
