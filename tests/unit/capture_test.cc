// The kernel's segment encoding (PODTAP_PF_SEGMENTS records) as the agent validates and reads it.
#include "agent/kernel/capture.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <string_view>

namespace podtap {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Segment(uint32_t offset, std::string_view bytes, uint16_t len_field = 0) {
  char head[8] = {};
  const uint16_t len = len_field ? len_field : static_cast<uint16_t>(bytes.size());
  std::memcpy(head, &offset, 4);
  std::memcpy(head + 4, &len, 2);
  return std::string(head, sizeof(head)) + std::string(bytes);
}

std::string Str(std::span<const uint8_t> b) { return {b.begin(), b.end()}; }

TEST(CaptureTest, PrefixReadsFromItsStart) {
  const std::string p = "GET / HTTP/1.1\r\n";
  Capture c(Bytes(p));
  EXPECT_FALSE(c.segmented());
  EXPECT_EQ(Str(c.At(0)), p);
  EXPECT_EQ(Str(c.At(4)), "/ HTTP/1.1\r\n");
  EXPECT_TRUE(c.At(p.size()).empty());
  EXPECT_TRUE(c.At(1000).empty());
}

TEST(CaptureTest, SegmentsAreFoundByOffsetAndGapsAreEmpty) {
  const std::string raw = Segment(0, "abc") + Segment(100, "defg") + Segment(5000, "h");
  ASSERT_TRUE(Capture::Valid(Bytes(raw), 5001));
  Capture c = Capture::Segments(Bytes(raw));
  EXPECT_TRUE(c.segmented());
  EXPECT_EQ(Str(c.At(0)), "abc");
  EXPECT_EQ(Str(c.At(2)), "c");
  EXPECT_TRUE(c.At(3).empty());
  EXPECT_TRUE(c.At(99).empty());
  EXPECT_EQ(Str(c.At(101)), "efg");
  EXPECT_TRUE(c.At(104).empty());
  EXPECT_EQ(Str(c.At(5000)), "h");
  EXPECT_TRUE(c.At(5001).empty());
}

TEST(CaptureTest, MalformedSegmentListsAreRejected) {
  EXPECT_TRUE(Capture::Valid({}, 10));                                           // nothing captured
  EXPECT_FALSE(Capture::Valid(Bytes(Segment(0, "abc").substr(0, 5)), 10));       // header cut
  EXPECT_FALSE(Capture::Valid(Bytes(Segment(0, "")), 10));                       // empty segment
  EXPECT_FALSE(Capture::Valid(Bytes(Segment(0, "abc", 9)), 10));                 // length past raw
  EXPECT_FALSE(Capture::Valid(Bytes(Segment(8, "abc")), 10));                    // past total_len
  EXPECT_FALSE(Capture::Valid(Bytes(Segment(4, "abc") + Segment(5, "d")), 10));  // overlap
  EXPECT_FALSE(Capture::Valid(Bytes(Segment(5, "abc") + Segment(0, "d")), 10));  // out of order
  EXPECT_TRUE(Capture::Valid(Bytes(Segment(4, "abc") + Segment(7, "d")), 10));   // adjacent
}

}  // namespace
}  // namespace podtap
