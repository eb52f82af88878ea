// Snapshot to JSON through nlohmann::json (ordered, so labels keep their order).
#include "exporter/json_format.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "exporter/text_format.h"

namespace podtap {
namespace {

using Json = nlohmann::ordered_json;

Json Number(double v) {
  if (std::isfinite(v)) return v;
  std::string s;
  text_format::AppendNumber(s, v);
  return s;
}

}  // namespace

std::string WriteJson(const Snapshot& snapshot, bool pretty) {
  Json families = Json::array();
  for (const MetricFamily& family : snapshot.families) {
    Json samples = Json::array();
    for (const Sample& sample : family.samples) {
      Json labels = Json::object();
      for (const auto& [name, value] : sample.labels) labels[name] = value;
      Json s = {{"labels", std::move(labels)}};
      if (family.type == MetricType::kHistogram) {
        const HistogramData& h = sample.histogram;
        Json buckets = Json::array();
        for (size_t i = 0; i < h.bounds.size() && i < h.cumulative_counts.size(); i++) {
          std::string le;
          text_format::AppendNumber(le, h.bounds[i]);
          buckets.push_back({{"le", le}, {"count", h.cumulative_counts[i]}});
        }
        buckets.push_back({{"le", "+Inf"}, {"count", h.count}});
        s["buckets"] = std::move(buckets);
        s["sum"] = Number(h.sum);
        s["count"] = h.count;
      } else {
        s["value"] = Number(sample.value);
      }
      samples.push_back(std::move(s));
    }
    families.push_back({{"name", family.name},
                        {"help", family.help},
                        {"type", MetricTypeName(family.type)},
                        {"unit", family.unit},
                        {"samples", std::move(samples)}});
  }
  Json doc = {{"families", std::move(families)}};
  std::string out = doc.dump(pretty ? 2 : -1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += '\n';
  return out;
}

}  // namespace podtap
