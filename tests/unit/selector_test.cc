// Tests Prometheus series selector parsing and matching, and the subset of a
// snapshot match[] selects.
#include "exporter/selector.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

Selector Parse(const std::string& text) {
  std::string error;
  auto sel = ParseSelector(text, &error);
  EXPECT_TRUE(sel.has_value()) << text << ": " << error;
  return sel.value_or(Selector{});
}

std::string ParseError(const std::string& text) {
  std::string error;
  EXPECT_FALSE(ParseSelector(text, &error).has_value()) << text;
  return error;
}

TEST(SelectorParseTest, AllOperatorsNameAndQuotes) {
  const Selector s = Parse(R"(response_total{a="x", b!='y',c=~"re.*",d!~`r\d`,})");
  ASSERT_EQ(s.matchers.size(), 5u);
  EXPECT_EQ(s.matchers[0].name, "__name__");
  EXPECT_EQ(s.matchers[0].value, "response_total");
  EXPECT_EQ(s.matchers[1].op, LabelMatcher::Op::kEqual);
  EXPECT_EQ(s.matchers[2].op, LabelMatcher::Op::kNotEqual);
  EXPECT_EQ(s.matchers[2].value, "y");
  EXPECT_EQ(s.matchers[3].op, LabelMatcher::Op::kRegex);
  EXPECT_EQ(s.matchers[4].op, LabelMatcher::Op::kNotRegex);
  EXPECT_EQ(s.matchers[4].value, R"(r\d)");  // backquotes: no escapes
}

TEST(SelectorParseTest, EscapesInDoubleQuotes) {
  const Selector s = Parse(R"({a="q\"b\\n\n"})");
  EXPECT_EQ(s.matchers[0].value, "q\"b\\n\n");
}

TEST(SelectorParseTest, NameOnlyAndBracesOnly) {
  EXPECT_EQ(Parse("up").matchers.size(), 1u);
  EXPECT_EQ(Parse(R"({__name__=~"tcp_.*"})").matchers[0].name, "__name__");
  EXPECT_EQ(Parse("job:rate5m{ }").matchers.size(), 1u);
}

TEST(SelectorParseTest, ErrorsSayWhatAndWhere) {
  EXPECT_NE(ParseError("").find("empty selector"), std::string::npos);
  EXPECT_NE(ParseError("{a=b}").find("expected a quoted value"), std::string::npos);
  EXPECT_NE(ParseError(R"({a="b")").find("expected ',' or '}'"), std::string::npos);
  EXPECT_NE(ParseError(R"({a=="b"})").find("expected a quoted value"), std::string::npos);
  EXPECT_NE(ParseError(R"({a<"b"})").find("expected one of"), std::string::npos);
  EXPECT_NE(ParseError(R"({a="b)").find("unterminated"), std::string::npos);
  EXPECT_NE(ParseError(R"({a=~"("})").find("bad regular expression"), std::string::npos);
  EXPECT_NE(ParseError(R"(x{} y)").find("unexpected text at offset 4"), std::string::npos);
}

TEST(SelectorMatchTest, RegexesAreAnchoredAndMissingLabelsAreEmpty) {
  const Selector s = Parse(R"({deployment=~"api|web",classification!="failure",tls!~"t.*"})");
  EXPECT_TRUE(s.Matches("x", {{"deployment", "api"}, {"classification", "success"}}));
  EXPECT_FALSE(s.Matches("x", {{"deployment", "api-2"}}));  // anchored
  EXPECT_FALSE(s.Matches("x", {{"deployment", "web"}, {"classification", "failure"}}));
  EXPECT_FALSE(s.Matches("x", {{"deployment", "web"}, {"tls", "true"}}));
  EXPECT_TRUE(Parse(R"({missing=""})").Matches("x", {}));
  EXPECT_FALSE(Parse(R"({missing!=""})").Matches("x", {}));
}

Snapshot Sample3() {
  Snapshot s;
  MetricFamily c;
  c.name = "response_total";
  c.type = MetricType::kCounter;
  c.samples = {{{{"direction", "inbound"}}, 1, {}}, {{{"direction", "outbound"}}, 2, {}}};
  s.families.push_back(c);
  MetricFamily h;
  h.name = "response_latency_ms";
  h.type = MetricType::kHistogram;
  h.unit = "ms";
  h.samples = {{{{"direction", "inbound"}}, 0, {}}};
  s.families.push_back(h);
  return s;
}

TEST(SelectorMatchTest, NestedRepetitionOnALongValueDoesNotBacktrack) {
  // A backtracking engine (std::regex was one) takes time exponential in
  // the value here; RE2 answers in one linear pass.
  const Selector s = Parse(R"({pod=~"(a+)+b"})");
  const std::string value(100000, 'a');
  EXPECT_FALSE(s.Matches("tcp_open_total", {{"pod", value}}));
  EXPECT_TRUE(s.Matches("tcp_open_total", {{"pod", value + "b"}}));
}

TEST(SelectorParseTest, WhatRe2RefusesIsAnError) {
  // Backreferences are not RE2 (nor Prometheus) syntax.
  EXPECT_NE(ParseError(R"({pod=~"(a)\1"})").find("bad regular expression"), std::string::npos);
}

TEST(SelectSeriesTest, KeepsMatchingSamplesAndDropsEmptyFamilies) {
  const Snapshot out = SelectSeries(Sample3(), {Parse(R"(response_total{direction="inbound"})")});
  ASSERT_EQ(out.families.size(), 1u);
  ASSERT_EQ(out.families[0].samples.size(), 1u);
  EXPECT_EQ(out.families[0].samples[0].value, 1);
}

TEST(SelectSeriesTest, HistogramSeriesNamesSelectTheirFamily) {
  const Snapshot out = SelectSeries(Sample3(), {Parse("response_latency_ms_bucket")});
  ASSERT_EQ(out.families.size(), 1u);
  EXPECT_EQ(out.families[0].name, "response_latency_ms");
  EXPECT_EQ(out.families[0].unit, "ms");
}

TEST(SelectSeriesTest, SeveralSelectorsAreAUnion) {
  const Snapshot out = SelectSeries(
      Sample3(), {Parse(R"({direction="outbound"})"), Parse(R"({__name__=~"response_lat.*"})")});
  ASSERT_EQ(out.families.size(), 2u);
  EXPECT_EQ(out.families[0].samples.size(), 1u);
  EXPECT_EQ(out.families[0].samples[0].value, 2);
}

}  // namespace
}  // namespace podtap
