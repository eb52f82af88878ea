// Tests that Gzip output is a gzip stream zlib inflates back to the input.
#include "exporter/gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace podtap {
namespace {

std::string Gunzip(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);  // gzip wrapper only
  std::string out;
  char buf[16384];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  }
  EXPECT_EQ(rc, Z_STREAM_END);
  inflateEnd(&z);
  return out;
}

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
