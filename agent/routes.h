// Route definitions (method + path regex -> route name) from the agent's
// config file, for the route_* metrics; unmatched requests are "[DEFAULT]".
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace podtap {

inline constexpr const char* kDefaultRoute = "[DEFAULT]";

struct Route {
  std::string name;
  std::string method;  // empty: any method
  std::string path_regex;
  std::regex path;  // full match against the path without query string
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
