// Tests the JSON writer: structure, pretty printing, special numbers and
// hostile label values, by reading the output back with nlohmann::json.
#include "exporter/json_format.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "tests/unit/hostile_snapshot.h"

namespace podtap {
namespace {

using testing::HostileSnapshot;
using testing::IsValidUtf8;

TEST(JsonFormatTest, ReadsBackWithEveryField) {
  const std::string text = WriteJson(HostileSnapshot(), false);
  EXPECT_TRUE(IsValidUtf8(text));
  EXPECT_EQ(text.find('\n'), text.size() - 1);  // compact: one line
  const auto doc = nlohmann::json::parse(text);
  const auto& families = doc.at("families");
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0]["name"], "request_total");
  EXPECT_EQ(families[0]["type"], "counter");
  const auto& sample = families[0]["samples"][0];
  EXPECT_EQ(sample["value"], 3);
  const std::string authority = sample["labels"]["authority"];
  EXPECT_EQ(authority.substr(0, 8), "a\"b\\c\nd\r");  // quoting survived the round trip
  EXPECT_NE(authority.find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_EQ(sample["labels"]["empty"], "");
  const auto& hist = families[2];
  EXPECT_EQ(hist["unit"], "ms");
  const auto& h = hist["samples"][0];
  EXPECT_EQ(h["count"], 4);
  EXPECT_EQ(h["sum"], 31.5);
  ASSERT_EQ(h["buckets"].size(), 3u);
  EXPECT_EQ(h["buckets"][1]["le"], "10");
  EXPECT_EQ(h["buckets"][1]["count"], 3);
  EXPECT_EQ(h["buckets"][2]["le"], "+Inf");
  EXPECT_EQ(h["buckets"][2]["count"], 4);
}

TEST(JsonFormatTest, PrettyIsIndentedAndEquivalent) {
  const std::string pretty = WriteJson(HostileSnapshot(), true);
  EXPECT_NE(pretty.find("\n  \"families\": ["), std::string::npos) << pretty;
  EXPECT_EQ(nlohmann::json::parse(pretty),
            nlohmann::json::parse(WriteJson(HostileSnapshot(), false)));
}

TEST(JsonFormatTest, NonFiniteValuesAreStrings) {
  Snapshot s;
  MetricFamily g;
  g.name = "g";
  g.type = MetricType::kGauge;
  g.samples = {{{}, std::numeric_limits<double>::quiet_NaN(), {}},
               {{}, std::numeric_limits<double>::infinity(), {}}};
  s.families.push_back(g);
  const auto doc = nlohmann::json::parse(WriteJson(s, false));
  EXPECT_EQ(doc["families"][0]["samples"][0]["value"], "NaN");
  EXPECT_EQ(doc["families"][0]["samples"][1]["value"], "+Inf");
}

}  // namespace
}  // namespace podtap
