// Test helpers: find samples in a Snapshot by family name and label subset.
#pragma once

#include <optional>
#include <string>

#include "agent/metrics/snapshot.h"

namespace podtap::testing {

inline bool HasLabels(const Labels& have, const Labels& want) {
  for (const auto& w : want) {
    bool found = false;
    for (const auto& h : have) found = found || h == w;
    if (!found) return false;
  }
  return true;
}

// The one sample of `family` whose labels include `want`; nullopt when none,
// and a failure when several match.
inline const Sample* Find(const Snapshot& s, const std::string& family, const Labels& want) {
  const Sample* hit = nullptr;
  for (const auto& f : s.families) {
    if (f.name != family) continue;
    for (const auto& sample : f.samples) {
      if (!HasLabels(sample.labels, want)) continue;
      if (hit != nullptr) return nullptr;
      hit = &sample;
    }
  }
  return hit;
}

inline double Value(const Snapshot& s, const std::string& family, const Labels& want) {
  const Sample* x = Find(s, family, want);
  return x ? x->value : -1;
}

}  // namespace podtap::testing
