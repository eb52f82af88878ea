// libFuzzer target: Prometheus series selectors from the metrics port's
// match[] parameter (ParseSelector), then matching against a few label sets.
// Anyone who reaches the port writes these: a bad one must be an error, never
// a crash or a hang, whatever its regexes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "exporter/selector.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  auto sel = podtap::ParseSelector(text, &error);
  if (!sel) {
    if (error.empty()) abort();  // a rejection always says why
    return 0;
  }
  if (sel->matchers.empty()) abort();
  const podtap::Labels label_sets[] = {
      {},
      {{"pod", "web-1"}, {"namespace", "shop"}},
      {{"pod", std::string(4096, 'a')}, {"authority", text}},
  };
  for (const auto& labels : label_sets) {
    sel->Matches("request_total", labels);
    sel->Matches(text, labels);
  }
  return 0;
}
