// Route definitions: parsing, errors, first-match order and the default.
#include "agent/protocols/routes.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

TEST(Routes, FirstMatchWinsAndUnmatchedIsDefault) {
  std::string err;
  auto t = ParseRoutes(R"({"routes":[
      {"name":"get-item","method":"GET","path_regex":"/items/[0-9]+"},
      {"name":"items-any","path_regex":"/items/.*"}]})",
                       &err);
  ASSERT_TRUE(t) << err;
  EXPECT_EQ(t->Match("GET", "/items/42"), "get-item");
  EXPECT_EQ(t->Match("POST", "/items/42"), "items-any");
  EXPECT_EQ(t->Match("GET", "/items/42/x"), "items-any");
  EXPECT_EQ(t->Match("GET", "/other"), kDefaultRoute);
  EXPECT_EQ(t->Match("GET", "/items/42x"), "items-any");  // full match, not search
}

TEST(Routes, MissingRoutesIsEmpty) {
  std::string err;
  auto t = ParseRoutes("{}", &err);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(t->Match("GET", "/"), kDefaultRoute);
}

TEST(Routes, ErrorsNameTheEntry) {
  for (auto [json, want] :
       {std::pair{"[]", "not a JSON object"}, std::pair{R"({"routes":{}})", "must be an array"},
        std::pair{R"({"routes":[{"name":"a"}]})", "routes[0]"},
        std::pair{R"({"routes":[{"name":"a","path_regex":"("}]})", "bad path_regex"},
        std::pair{R"({"routes":[{"name":"[DEFAULT]","path_regex":"/"}]})", "must be non-empty"}}) {
    std::string err;
    EXPECT_FALSE(ParseRoutes(json, &err)) << json;
    EXPECT_NE(err.find(want), std::string::npos) << json << " -> " << err;
  }
}

}  // namespace
}  // namespace podtap
