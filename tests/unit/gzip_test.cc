// Tests that Gzip output is a gzip stream zlib inflates back to the input.
#include "exporter/gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

#include "tests/unit/gunzip.h"

namespace podtap {
namespace {

using testing::Gunzip;

TEST(GzipTest, RoundTrip) {
  std::string text;
  for (int i = 0; i < 100000; i++) {
    text += "request_total{authority=\"svc-" + std::to_string(i % 97) + "\"} " + std::to_string(i) +
            "\n";
  }
  text += std::string("\0\xff binary", 9);
  const std::string gz = Gzip(text);
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_LT(gz.size(), text.size() / 5);
  EXPECT_EQ(Gunzip(gz), text);
}

TEST(GzipTest, Empty) { EXPECT_EQ(Gunzip(Gzip("")), ""); }

}  // namespace
}  // namespace podtap
