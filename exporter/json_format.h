// Writes a Snapshot as JSON for scripts (/metrics.json).
#pragma once

#include <string>

#include "agent/metrics/snapshot.h"

namespace podtap {

inline constexpr const char* kJsonContentType = "application/json";

// {"families":[{"name","help","type","unit","samples":[{"labels":{...},
// "value":N} or, for histograms, {"labels":{...},"buckets":[{"le":"1",
// "count":N},...,{"le":"+Inf","count":N}],"sum":N,"count":N}]}]}.
// Bucket counts are cumulative as in the text format. NaN and infinities,
// which JSON has no numbers for, are the strings "NaN", "+Inf", "-Inf";
// invalid UTF-8 in labels becomes U+FFFD. `pretty`: indented by two spaces.
std::string WriteJson(const Snapshot& snapshot, bool pretty);

}  // namespace podtap
