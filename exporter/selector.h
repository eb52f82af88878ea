// Prometheus series selectors (`name{label="v",l2!="x",l3=~"re",l4!~"re"}`)
// for the match[] parameter of /metrics: parsing, matching, and the subset
// of a Snapshot they select, in the spirit of Prometheus' /federate.
#pragma once

#include <re2/re2.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/metrics/snapshot.h"

namespace podtap {

struct LabelMatcher {
  enum class Op { kEqual, kNotEqual, kRegex, kNotRegex };
  std::string name;  // "__name__" for the metric name
  Op op = Op::kEqual;
  std::string value;
  // kRegex/kNotRegex: `value`, anchored at both ends as in PromQL. RE2
  // matches in time linear in the input, whatever the pattern: match[] is
  // open to anyone who reaches the metrics port.
  std::shared_ptr<const re2::RE2> re;

  bool Matches(std::string_view v) const;
};

struct Selector {
  std::vector<LabelMatcher> matchers;  // all must match

  // A label the sample does not have counts as "", as in PromQL.
  bool Matches(std::string_view metric_name, const Labels& labels) const;
};

// Parses one selector; nullopt with `error` saying what and where when the
// text is not one. Values are double-, single- or backquoted as in PromQL;
// regular expressions are RE2's syntax, as in Prometheus (which uses Go's
// regexp, RE2's syntax too).
std::optional<Selector> ParseSelector(std::string_view text, std::string* error);

// The samples of `snapshot` that any of `selectors` matches, families with
// none left out. __name__ is matched against the family name and, for a
// histogram, also its _bucket/_sum/_count names and, for a counter, the
// name with "_total" (so either spelling selects it).
Snapshot SelectSeries(const Snapshot& snapshot, const std::vector<Selector>& selectors);

}  // namespace podtap
