// Families built from their declarations.
#include "agent/metrics/metric_families.h"

#include <string>

namespace podtap {

MetricFamily NewFamily(const FamilyDef& def) {
  MetricFamily f;
  f.name = std::string(def.name);
  f.help = std::string(def.help);
  f.type = def.type;
  f.unit = std::string(def.unit);
  return f;
}

}  // namespace podtap
