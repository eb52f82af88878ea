// Route definitions (method + path regex -> route name) from the agent's
// config file, for the route_* metrics; unmatched requests are "[DEFAULT]".
#pragma once

#include <re2/re2.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace podtap {

inline constexpr const char* kDefaultRoute = "[DEFAULT]";

struct Route {
  std::string name;
  std::string method;  // empty: any method
  std::string path_regex;
  // Full match against the path without query string; RE2 (linear time,
  // Prometheus' syntax), shared so routes stay copyable.
  std::shared_ptr<const re2::RE2> path;
};

class RouteTable {
 public:
  RouteTable() = default;
  explicit RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {}
  // The first route that matches, in file order.
  const std::string& Match(const std::string& method, const std::string& path) const;
  size_t size() const { return routes_.size(); }

 private:
  std::vector<Route> routes_;
  std::string default_ = kDefaultRoute;
};

// Parses the "routes" array of a config document:
// {"routes":[{"name":"get-item","method":"GET","path_regex":"/items/[0-9]+"}]}.
// A missing "routes" key is an empty table; errors name the entry.
std::optional<RouteTable> ParseRoutes(const std::string& json_text, std::string* error);

}  // namespace podtap
