// Tests the OpenMetrics 1.0 writer, and that both text writers keep an
// exposition parseable whatever the label values hold.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "exporter/text_format.h"
#include "tests/unit/hostile_snapshot.h"

namespace podtap {
namespace {

using testing::HostileSnapshot;
using testing::IsValidUtf8;

TEST(OpenMetricsTest, Golden) {
  Snapshot s;
  MetricFamily bytes;
  bytes.name = "tcp_read_bytes_total";
  bytes.help = "Bytes \"read\".";
  bytes.type = MetricType::kCounter;
  bytes.unit = "bytes";
  bytes.samples.push_back({{{"peer", "src"}}, 42, {}});
  s.families.push_back(bytes);
  MetricFamily latency;
  latency.name = "response_latency_ms";
  latency.help = "Latency.";
  latency.type = MetricType::kHistogram;
  latency.unit = "ms";
  Sample h;
  h.histogram = {{1, 10}, {2, 3, 4}, 31.5, 4};
  latency.samples.push_back(h);
  s.families.push_back(latency);
  MetricFamily info;
  info.name = "podtap_build_info";
  info.help = "Build.";
  info.type = MetricType::kGauge;
  info.unit = "seconds";  // not a suffix of the name: left out
  s.families.push_back(info);

  EXPECT_EQ(WriteOpenMetrics(s),
            "# HELP tcp_read_bytes Bytes \\\"read\\\".\n"
            "# TYPE tcp_read_bytes counter\n"
            "# UNIT tcp_read_bytes bytes\n"
            "tcp_read_bytes_total{peer=\"src\"} 42\n"
            "# HELP response_latency_ms Latency.\n"
            "# TYPE response_latency_ms histogram\n"
            "# UNIT response_latency_ms ms\n"
            "response_latency_ms_bucket{le=\"1\"} 2\n"
            "response_latency_ms_bucket{le=\"10\"} 3\n"
            "response_latency_ms_bucket{le=\"+Inf\"} 4\n"
            "response_latency_ms_sum 31.5\n"
            "response_latency_ms_count 4\n"
            "# HELP podtap_build_info Build.\n"
            "# TYPE podtap_build_info gauge\n"
            "# EOF\n");
}

TEST(OpenMetricsTest, CounterWithoutTotalSuffixGetsItOnSamples) {
  Snapshot s;
  MetricFamily f;
  f.name = "events";
  f.help = "h";
  f.type = MetricType::kCounter;
  f.samples.push_back({{}, 1, {}});
  s.families.push_back(f);
  EXPECT_EQ(WriteOpenMetrics(s), "# HELP events h\n# TYPE events counter\nevents_total 1\n# EOF\n");
}

TEST(OpenMetricsTest, EmptySnapshotIsJustEof) { EXPECT_EQ(WriteOpenMetrics({}), "# EOF\n"); }

// A raw carriage return is legal inside a quoted label value in both
// formats (their lexers exclude only '"', '\\' and '\n'), so it is kept.
// Each line of a valid exposition is a comment or `name{labels} value`; a
// hostile value must neither split a line nor end its quoted string early.
void ExpectWellFormed(const std::string& text) {
  EXPECT_TRUE(IsValidUtf8(text)) << text;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    ASSERT_NE(end, std::string::npos);
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("# ", 0) == 0) continue;
    // Walk the label block honouring escapes: the value must follow '}'.
    bool quoted = false;
    size_t i = 0;
    for (; i < line.size(); i++) {
      if (quoted && line[i] == '\\') {
        i++;
        continue;
      }
      if (line[i] == '"') quoted = !quoted;
      if (!quoted && line[i] == '}') break;
    }
    EXPECT_FALSE(quoted) << line;
    const size_t space = line.find(' ', line.find('}') == std::string::npos ? 0 : i);
    ASSERT_NE(space, std::string::npos) << line;
    EXPECT_NO_THROW(std::stod(line.substr(space + 1))) << line;
  }
}

TEST(OpenMetricsTest, HostileLabelValuesStayInsideTheirQuotes) {
  const std::string om = WriteOpenMetrics(HostileSnapshot());
  ExpectWellFormed(om.substr(0, om.size() - 6));  // all but "# EOF\n"
  EXPECT_NE(om.find(R"(authority="a\"b\\c\nd)"), std::string::npos) << om;
  EXPECT_NE(om.find("\xEF\xBF\xBD"), std::string::npos);              // U+FFFD for the bad bytes
  EXPECT_NE(om.find("\xC3\xA9\xF0\x9F\x98\x80"), std::string::npos);  // valid ones kept
}

// promtool parses with client_golang's parser, which rejects invalid UTF-8
// and broken quoting; exit code 3 means lint remarks only (Linkerd's "_ms"
// names), 1 a parse error.
int Promtool(const std::string& exposition) {
  char path[] = "/tmp/podtap-hostile-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return -1;
  const bool written =
      write(fd, exposition.data(), exposition.size()) == static_cast<ssize_t>(exposition.size());
  close(fd);
  const int status =
      written ? std::system(
                    ("promtool check metrics < " + std::string(path) + " >/dev/null 2>&1").c_str())
              : -1;
  unlink(path);
  return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(TextFormatHostileTest, PromtoolParsesHostileValues) {
  const int rc = Promtool(WriteTextFormat(HostileSnapshot()));
  EXPECT_TRUE(rc == 0 || rc == 3) << "promtool exit " << rc;
}

TEST(TextFormatHostileTest, HostileLabelValuesStayInsideTheirQuotes) {
  const std::string text = WriteTextFormat(HostileSnapshot());
  ExpectWellFormed(text);
  EXPECT_NE(text.find(R"(authority="a\"b\\c\nd)"), std::string::npos) << text;
  // HELP escapes backslash and newline only.
  EXPECT_NE(text.find("# HELP request_total Help with \\\\ backslash, \"quotes\" and\\nnewline "
                      "\xEF\xBF\xBD."),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace podtap
