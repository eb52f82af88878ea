// Route table parsing and matching.
#include "agent/protocols/routes.h"

#include <nlohmann/json.hpp>

namespace podtap {

const std::string& RouteTable::Match(const std::string& method, const std::string& path) const {
  for (const auto& r : routes_) {
    if (!r.method.empty() && r.method != method) continue;
    if (re2::RE2::FullMatch(path, *r.path)) return r.name;
  }
  return default_;
}

std::optional<RouteTable> ParseRoutes(const std::string& json_text, std::string* error) {
  auto doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    *error = "config is not a JSON object";
    return std::nullopt;
  }
  std::vector<Route> routes;
  if (!doc.contains("routes")) return RouteTable{};
  if (!doc["routes"].is_array()) {
    *error = "\"routes\" must be an array";
    return std::nullopt;
  }
  size_t i = 0;
  for (const auto& r : doc["routes"]) {
    std::string where = "routes[" + std::to_string(i++) + "]";
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string() ||
        !r.contains("path_regex") || !r["path_regex"].is_string() ||
        (r.contains("method") && !r["method"].is_string())) {
      *error =
          where + ": needs string fields \"name\" and \"path_regex\" (and optional \"method\")";
      return std::nullopt;
    }
    Route route;
    route.name = r["name"].get<std::string>();
    route.method = r.value("method", "");
    route.path_regex = r["path_regex"].get<std::string>();
    if (route.name.empty() || route.name == kDefaultRoute) {
      *error = where + ": \"name\" must be non-empty and not " + kDefaultRoute;
      return std::nullopt;
    }
    re2::RE2::Options options;
    options.set_log_errors(false);
    route.path = std::make_shared<const re2::RE2>(route.path_regex, options);
    if (!route.path->ok()) {
      *error = where + " (" + route.name + "): bad path_regex: " + route.path->error();
      return std::nullopt;
    }
    routes.push_back(std::move(route));
  }
  return RouteTable(std::move(routes));
}

}  // namespace podtap
