// The HTTP/2 parser against header blocks from nghttp2's own HPACK deflater, in frames split,
// truncated, interleaved and broken in the ways captured prefixes break them.
#include "agent/protocols/http2_parser.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace podtap {
namespace {

constexpr HttpStream kReq = HttpStream::kRequest;
constexpr HttpStream kResp = HttpStream::kResponse;
using State = Http2Parser::State;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags, RFC 9113 section 6.
constexpr uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kPushPromise = 5,
                  kPing = 6, kGoaway = 7, kWindowUpdate = 8, kContinuation = 9;
constexpr uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4, kPadded = 0x8, kPriority = 0x20;
constexpr uint16_t kHeaderTableSize = 0x1, kMaxConcurrentStreams = 0x3;

struct Recorder : Http2Sink {
  std::vector<Http2Request> requests;
  std::vector<Http2Response> responses;
  std::vector<Http2Error> errors;
  void OnRequest(const Http2Request& r) override { requests.push_back(r); }
  void OnResponse(const Http2Response& r) override { responses.push_back(r); }
  void OnError(Http2Error e) override { errors.push_back(e); }
  size_t Count(Http2Error e) const { return std::count(errors.begin(), errors.end(), e); }
};

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// One syscall of `bytes`, of which the kernel captured the first `prefix`.
void Feed(Http2Parser& p, HttpStream s, std::string_view bytes, uint64_t ts,
          size_t prefix = std::numeric_limits<size_t>::max()) {
  p.Feed(s, Bytes(bytes.substr(0, std::min(prefix, bytes.size()))), bytes.size(), ts);
}

// One endpoint's HPACK encoder: nghttp2's, so that the encoder is not the one under test.
class Encoder {
 public:
  explicit Encoder(size_t max_table = 4096) {
    EXPECT_EQ(nghttp2_hd_deflate_new(&d_, max_table), 0);
  }
  ~Encoder() { nghttp2_hd_deflate_del(d_); }
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  std::string Encode(const Headers& h) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : h) {
      nva.push_back({const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                     const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                     name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(d_, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(d_, reinterpret_cast<uint8_t*>(out.data()), out.size(),
                                            nva.data(), nva.size());
    EXPECT_GE(n, 0);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return out;
  }

  // What an endpoint does on receiving its peer's SETTINGS_HEADER_TABLE_SIZE.
  void ChangeTableSize(size_t n) { EXPECT_EQ(nghttp2_hd_deflate_change_table_size(d_, n), 0); }

 private:
  nghttp2_hd_deflater* d_ = nullptr;
};

void Put32(std::string& s, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>(v >> shift));
}

// A frame header announcing `length` payload bytes.
std::string FrameHeader(uint32_t length, uint8_t type, uint8_t flags, uint32_t stream) {
  std::string f;
  f.push_back(static_cast<char>(length >> 16));
  f.push_back(static_cast<char>(length >> 8));
  f.push_back(static_cast<char>(length));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  Put32(f, stream);
  return f;
}

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload = {}) {
  return FrameHeader(static_cast<uint32_t>(payload.size()), type, flags, stream) +
         std::string(payload);
}

std::string Settings(const std::vector<std::pair<uint16_t, uint32_t>>& entries = {}) {
  std::string p;
  for (auto [id, value] : entries) {
    p.push_back(static_cast<char>(id >> 8));
    p.push_back(static_cast<char>(id));
    Put32(p, value);
  }
  return Frame(kSettings, 0, 0, p);
}

// Concatenated in order: the operands of `+` may be evaluated in any order, and encoding order
// matters to HPACK.
std::string Join(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& p : parts) out += p;
  return out;
}

std::string SettingsAck() { return Frame(kSettings, kAck, 0); }

std::string RstStream(uint32_t stream, uint32_t code = 8 /* CANCEL */) {
  std::string p;
  Put32(p, code);
  return Frame(kRstStream, 0, stream, p);
}

std::string Goaway(uint32_t last_stream, uint32_t code = 0) {
  std::string p;
  Put32(p, last_stream);
  Put32(p, code);
  return Frame(kGoaway, 0, 0, p + "bye");
}

std::string Data(uint32_t stream, std::string_view body, bool end_stream) {
  return Frame(kData, end_stream ? kEndStream : 0, stream, body);
}

Headers Get(std::string path, std::string authority = "example.com") {
  return {{":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", authority}};
}

Headers GrpcCall(std::string method) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":path", "/helloworld.Greeter/" + method},
          {":authority", "greeter.default.svc:50051"},
          {"content-type", "application/grpc"},
          {"te", "trailers"},
          {"user-agent", "grpc-c++/1.51"}};
}

Headers Status(int code) { return {{":status", std::to_string(code)}}; }
Headers GrpcHeaders() { return {{":status", "200"}, {"content-type", "application/grpc"}}; }
Headers GrpcTrailers(int code) {
  return {{"grpc-status", std::to_string(code)}, {"grpc-message", code ? "unavailable" : ""}};
}

// Both endpoints of one connection: each direction has its own encoder, as in a real one.
struct Conn {
  Encoder client, server;
  std::string Request(uint32_t id, const Headers& h, bool end_stream = true) {
    return Frame(kHeaders, kEndHeaders | (end_stream ? kEndStream : 0), id, client.Encode(h));
  }
  std::string Response(uint32_t id, const Headers& h, bool end_stream = false) {
    return Frame(kHeaders, kEndHeaders | (end_stream ? kEndStream : 0), id, server.Encode(h));
  }
};

std::string ClientOpen() { return std::string(kPreface) + Settings(); }
std::string ServerOpen() { return Settings({{kMaxConcurrentStreams, 100}}) + SettingsAck(); }

class Http2ParserTest : public ::testing::Test {
 protected:
  void Open() {
    Feed(p_, kReq, ClientOpen(), 1);
    Feed(p_, kResp, ServerOpen(), 2);
  }

  Recorder rec_;
  Http2Parser p_{&rec_};
  Conn c_;
};

TEST(Http2PrefaceTest, RecognisesThePrefaceAndItsPrefixes) {
  EXPECT_TRUE(LooksLikeHttp2Preface(Bytes(kPreface)));
  EXPECT_TRUE(LooksLikeHttp2Preface(Bytes(ClientOpen())));
  EXPECT_TRUE(LooksLikeHttp2Preface(Bytes("PRI * HT")));
  EXPECT_FALSE(LooksLikeHttp2Preface(Bytes("")));
  EXPECT_FALSE(LooksLikeHttp2Preface(Bytes("GET / HTTP/1.1\r\n")));
  EXPECT_FALSE(LooksLikeHttp2Preface(Bytes("PRI * HTTP/2.0\r\n\r\nXX")));
}

TEST(Http2ErrorNameTest, EveryErrorHasALabel) {
  for (int e = 0; e < static_cast<int>(Http2Error::kCount); ++e) {
    EXPECT_STRNE(Http2ErrorName(static_cast<Http2Error>(e)), "unknown");
  }
  EXPECT_STREQ(Http2ErrorName(Http2Error::kHpackFailed), "hpack_failed");
}

TEST_F(Http2ParserTest, SimpleGetWithData) {
  Open();
  Feed(p_, kReq, c_.Request(1, Get("/index.html?q=1#top")), 10);
  ASSERT_EQ(rec_.requests.size(), 1u);
  const Http2Request& q = rec_.requests[0];
  EXPECT_EQ(q.method, "GET");
  EXPECT_EQ(q.authority, "example.com");
  EXPECT_EQ(q.path, "/index.html");
  EXPECT_EQ(q.stream_id, 1u);
  EXPECT_FALSE(q.grpc);
  EXPECT_EQ(q.headers_end_ns, 10u);

  Feed(p_, kResp, c_.Response(1, Status(200)), 20);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kResp, Data(1, "hello", false), 25);
  Feed(p_, kResp, Data(1, "", true), 30);
  ASSERT_EQ(rec_.responses.size(), 1u);
  const Http2Response& r = rec_.responses[0];
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.grpc_status, -1);
  EXPECT_EQ(r.request.path, "/index.html");
  EXPECT_EQ(r.first_byte_ns, 25u);
  EXPECT_EQ(r.end_ns, 30u);
  EXPECT_FALSE(r.cut_off);
  EXPECT_TRUE(rec_.errors.empty());
  EXPECT_EQ(p_.state(), State::kActive);
}

TEST_F(Http2ParserTest, HostHeaderStandsInForAuthority) {
  Open();
  Feed(p_, kReq,
       c_.Request(1, {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "h:8080"}}),
       10);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].authority, "h:8080");
}

TEST_F(Http2ParserTest, GrpcUnaryOkAndUnavailable) {
  Open();
  int ts = 10;
  for (auto [id, code] : {std::pair<uint32_t, int>{1, 0}, {3, 14}}) {
    Feed(p_, kReq, c_.Request(id, GrpcCall("SayHello"), false), ts++);
    Feed(p_, kReq, Data(id, std::string("\0\0\0\0\5hello", 10), true), ts++);
    Feed(p_, kResp, c_.Response(id, GrpcHeaders()), ts++);
    Feed(p_, kResp, Data(id, std::string("\0\0\0\0\2hi", 7), false), ts++);
    Feed(p_, kResp, c_.Response(id, GrpcTrailers(code), true), ts++);
  }
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_TRUE(rec_.requests[0].grpc);
  EXPECT_EQ(rec_.requests[1].path, "/helloworld.Greeter/SayHello");
  EXPECT_EQ(rec_.requests[1].authority, "greeter.default.svc:50051");
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].grpc_status, 0);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 13u);
  EXPECT_EQ(rec_.responses[0].end_ns, 14u);
  EXPECT_EQ(rec_.responses[1].grpc_status, 14);
  EXPECT_TRUE(rec_.responses[1].request.grpc);
  EXPECT_EQ(rec_.responses[1].request.stream_id, 3u);
  EXPECT_FALSE(rec_.responses[1].cut_off);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, GrpcTrailersOnlyResponse) {
  Open();
  Feed(p_, kReq, c_.Request(1, GrpcCall("SayHello")), 10);
  Headers h = GrpcHeaders();
  h.emplace_back("grpc-status", "5");
  Feed(p_, kResp, c_.Response(1, h, true), 20);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].grpc_status, 5);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 20u);
  EXPECT_EQ(rec_.responses[0].end_ns, 20u);
}

TEST_F(Http2ParserTest, ConcurrentStreamsInterleaved) {
  Open();
  // Several frames per syscall, streams answered out of order.
  Feed(p_, kReq,
       Join({c_.Request(1, Get("/a")), c_.Request(3, Get("/b")), c_.Request(5, Get("/c"))}), 10);
  ASSERT_EQ(rec_.requests.size(), 3u);
  Feed(p_, kResp,
       Join({c_.Response(5, Status(404)), c_.Response(1, Status(200)), Data(5, "gone", false),
             Data(1, "a", false), c_.Response(3, Status(503), true)}),
       20);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].request.path, "/b");
  EXPECT_EQ(rec_.responses[0].status, 503);
  Feed(p_, kResp,
       Data(1, "a", true) + Frame(kWindowUpdate, 0, 0, std::string("\0\0\1\0", 4)) +
           Data(5, "", true),
       30);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[1].request.path, "/a");
  EXPECT_EQ(rec_.responses[1].status, 200);
  EXPECT_EQ(rec_.responses[1].first_byte_ns, 20u);
  EXPECT_EQ(rec_.responses[2].request.path, "/c");
  EXPECT_EQ(rec_.responses[2].status, 404);
  EXPECT_EQ(rec_.responses[2].end_ns, 30u);
  EXPECT_TRUE(rec_.errors.empty());
}

// What one run over a small exchange gives, without the timestamps that splitting moves.
struct Outcome {
  std::vector<std::string> requests, responses;
  std::vector<Http2Error> errors;
  bool operator==(const Outcome&) const = default;
};

Outcome Summarise(const Recorder& rec) {
  Outcome o;
  for (const Http2Request& q : rec.requests) {
    o.requests.push_back(q.method + " " + q.authority + q.path + " #" +
                         std::to_string(q.stream_id) + (q.grpc ? " grpc" : ""));
  }
  for (const Http2Response& r : rec.responses) {
    o.responses.push_back(std::to_string(r.request.stream_id) + " " + std::to_string(r.status) +
                          " " + std::to_string(r.grpc_status) + (r.cut_off ? " cut" : ""));
  }
  o.errors = rec.errors;
  return o;
}

struct Exchange {
  std::string request, response;
};

Exchange SmallExchange() {
  Conn c;
  Exchange x;
  x.request = Join({ClientOpen(), SettingsAck(), c.Request(1, Get("/one")),
                    c.Request(3, GrpcCall("Hello"), false), Data(3, "abc", true),
                    c.Request(5, Get("/one"))});
  x.response = Join({ServerOpen(), c.Response(1, Status(200)), Data(1, "xy", true),
                     c.Response(3, GrpcHeaders()), Data(3, "z", false),
                     c.Response(3, GrpcTrailers(14), true), c.Response(5, Status(200), true)});
  return x;
}

TEST(Http2SplitTest, EverySplitPointGivesTheSameResult) {
  const Exchange x = SmallExchange();
  Recorder whole;
  {
    Http2Parser p(&whole);
    Feed(p, kReq, x.request, 1);
    Feed(p, kResp, x.response, 2);
  }
  const Outcome want = Summarise(whole);
  ASSERT_EQ(want.requests.size(), 3u);
  ASSERT_EQ(want.responses.size(), 3u);
  EXPECT_EQ(want.responses[1], "3 200 14");
  EXPECT_TRUE(want.errors.empty());

  for (size_t i = 1; i < x.request.size(); ++i) {
    for (size_t j = 1; j < x.response.size(); ++j) {
      Recorder rec;
      Http2Parser p(&rec);
      Feed(p, kReq, std::string_view(x.request).substr(0, i), 1);
      Feed(p, kReq, std::string_view(x.request).substr(i), 2);
      Feed(p, kResp, std::string_view(x.response).substr(0, j), 3);
      Feed(p, kResp, std::string_view(x.response).substr(j), 4);
      ASSERT_EQ(Summarise(rec), want) << "request split at " << i << ", response at " << j;
    }
  }
}

TEST(Http2SplitTest, OneBytePerFeed) {
  const Exchange x = SmallExchange();
  Recorder rec;
  Http2Parser p(&rec);
  uint64_t ts = 0;
  for (char c : x.request) Feed(p, kReq, std::string_view(&c, 1), ++ts);
  for (char c : x.response) Feed(p, kResp, std::string_view(&c, 1), ++ts);
  const Outcome got = Summarise(rec);
  ASSERT_EQ(got.requests.size(), 3u);
  EXPECT_EQ(got.requests[1], "POST greeter.default.svc:50051/helloworld.Greeter/Hello #3 grpc");
  EXPECT_EQ(got.responses, (std::vector<std::string>{"1 200 -1", "3 200 14", "5 200 -1"}));
  EXPECT_TRUE(got.errors.empty());
  // A block ends with the Feed of its last byte; a DATA frame begins with its header's last byte.
  EXPECT_EQ(rec.requests[0].headers_end_ns,
            ClientOpen().size() + SettingsAck().size() + Conn().Request(1, Get("/one")).size());
  const uint64_t data_header_end =
      x.request.size() + ServerOpen().size() + Conn().Response(1, Status(200)).size() + 9;
  EXPECT_EQ(rec.responses[0].first_byte_ns, data_header_end);
  EXPECT_EQ(rec.responses[0].end_ns, data_header_end + 2);
}

TEST_F(Http2ParserTest, LargeDataFrameSkippedByLength) {
  Open();
  Feed(p_, kReq, c_.Request(1, Get("/big")), 10);
  Feed(p_, kResp, c_.Response(1, Status(200)), 20);
  // One 100 KB DATA frame in one write, of which 256 bytes were captured.
  Feed(p_, kResp, Data(1, std::string(100000, 'x'), false), 30, 256);
  // One spread over several writes, 256 bytes captured of each.
  const std::string second = Data(1, std::string(50000, 'y'), false);
  for (size_t at = 0; at < second.size(); at += 16384) {
    Feed(p_, kResp, std::string_view(second).substr(at, 16384), 40 + at / 16384, 256);
  }
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kResp, Data(1, "", true), 50);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 30u);
  EXPECT_EQ(rec_.responses[0].end_ns, 50u);
  EXPECT_TRUE(rec_.errors.empty());
  EXPECT_EQ(p_.state(), State::kActive);
}

TEST_F(Http2ParserTest, DataFrameEndingPastThePrefixEndsTheResponse) {
  Open();
  Feed(p_, kReq, c_.Request(1, Get("/big")), 10);
  Feed(p_, kResp, c_.Response(1, Status(200)) + Data(1, std::string(5000, 'x'), true), 20, 64);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].end_ns, 20u);
}

// What bpf/sockdata.bpf.c captures of one syscall on an HTTP/2 connection whose bytes begin at
// a frame boundary (or at the preface) and end at one or inside a frame header: every frame
// header, and the payload of HEADERS, SETTINGS,
// PUSH_PROMISE, GOAWAY and CONTINUATION frames, as podtap_segment-encoded segments, adjacent
// captures merged into one segment.
std::string KernelSegments(std::string_view bytes, bool preface = false) {
  std::vector<std::pair<size_t, size_t>> runs;  // (offset, length)
  auto keep = [&runs](size_t off, size_t len) {
    if (len == 0) return;
    if (!runs.empty() && runs.back().first + runs.back().second == off) {
      runs.back().second += len;
    } else {
      runs.emplace_back(off, len);
    }
  };
  size_t off = 0;
  if (preface) {
    keep(0, kPreface.size());
    off = kPreface.size();
  }
  while (off + 9 <= bytes.size()) {
    const auto* h = reinterpret_cast<const uint8_t*>(bytes.data() + off);
    const size_t len = size_t{h[0]} << 16 | size_t{h[1]} << 8 | h[2];
    const uint8_t type = h[3];
    const bool captured = type == kHeaders || type == kSettings || type == kPushPromise ||
                          type == kGoaway || type == kContinuation;
    keep(off, 9 + (captured ? len : 0));
    off += 9 + len;
  }
  if (off < bytes.size()) keep(off, bytes.size() - off);  // a frame header split by the syscall
  std::string out;
  for (auto [at, len] : runs) {
    char seg[8] = {};
    const uint32_t at32 = static_cast<uint32_t>(at);
    const uint16_t len16 = static_cast<uint16_t>(len);
    std::memcpy(seg, &at32, 4);
    std::memcpy(seg + 4, &len16, 2);
    out.append(seg, sizeof(seg));
    out.append(bytes.substr(at, len));
  }
  return out;
}

void FeedSegments(Http2Parser& p, HttpStream s, std::string_view bytes, uint64_t ts,
                  bool preface = false) {
  const std::string segs = KernelSegments(bytes, preface);
  ASSERT_TRUE(Capture::Valid(Bytes(segs), bytes.size()));
  p.Feed(s, Capture::Segments(Bytes(segs)), bytes.size(), ts);
}

// nginx writes several responses in one writev: later HEADERS frames lie past 8 KB DATA frames,
// far beyond any prefix; the kernel's segments carry them, and the dynamic table stays right.
TEST_F(Http2ParserTest, KernelSegmentsCarryHeaderBlocksPastLargeDataFrames) {
  FeedSegments(p_, kReq, ClientOpen(), 1, true);
  FeedSegments(p_, kResp, ServerOpen(), 2);
  FeedSegments(p_, kReq,
               Join({c_.Request(1, Get("/a")), c_.Request(3, Get("/b")), c_.Request(5, Get("/c"))}),
               10);
  const std::string body(8192, 'x');
  FeedSegments(p_, kResp,
               Join({c_.Response(1, Status(200)), Data(1, body, false), Data(1, body, true),
                     c_.Response(3, Status(404)), Data(3, body, true), c_.Response(5, Status(200)),
                     Data(5, body, false)}),
               20);
  // The last DATA frame arrives in two reads split inside its header.
  const std::string last = Data(5, body, true);
  FeedSegments(p_, kResp, std::string_view(last).substr(0, 4), 30);
  ASSERT_EQ(rec_.responses.size(), 2u);
  p_.Feed(kResp, Bytes(std::string_view(last).substr(4, 5)), last.size() - 4, 31);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[0].request.path, "/a");
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.responses[1].status, 404);
  EXPECT_EQ(rec_.responses[2].request.path, "/c");
  EXPECT_EQ(rec_.responses[2].end_ns, 31u);
  EXPECT_TRUE(rec_.errors.empty());
  EXPECT_EQ(p_.state(), State::kActive);
}

TEST_F(Http2ParserTest, SegmentsMissingAFrameHeaderLoseSync) {
  Open();
  Feed(p_, kReq, c_.Request(1, Get("/a")), 10);
  const std::string bytes =
      Join({c_.Response(1, Status(200)), Data(1, std::string(5000, 'x'), true)});
  // One segment: the HEADERS frame and the DATA frame's header next to it. Cut the DATA frame's
  // header off, as a record out of room would.
  std::string segs = KernelSegments(bytes);
  const size_t headers_frame = bytes.size() - 5000 - 9;
  ASSERT_EQ(segs.size(), 8 + headers_frame + 9);
  segs.resize(8 + headers_frame);
  const uint16_t len16 = static_cast<uint16_t>(headers_frame);
  std::memcpy(segs.data() + 4, &len16, 2);
  ASSERT_TRUE(Capture::Valid(Bytes(segs), bytes.size()));
  p_.Feed(kResp, Capture::Segments(Bytes(segs)), bytes.size(), 20);
  EXPECT_EQ(rec_.Count(Http2Error::kLostSync), 1u);
  EXPECT_EQ(p_.state(), State::kGaveUp);
}

TEST_F(Http2ParserTest, HeaderBlockLargerThanThePrefix) {
  Open();
  Headers big = Get("/a");
  big.emplace_back("cookie", std::string(2000, 'c'));
  big.emplace_back("x-request-id", "r1");
  Feed(p_, kReq, c_.Request(1, big), 10, 256);
  // Counted from the frame header, with the fields captured before the cut.
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].method, "GET");
  EXPECT_EQ(rec_.requests[0].path, "/a");
  EXPECT_EQ(rec_.requests[0].authority, "example.com");
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 1u);

  // The encoder now refers to entries the parser never saw: still a request, fields unknown.
  Feed(p_, kReq, c_.Request(3, Get("/a")), 20);
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_EQ(rec_.requests[1].method, "GET");  // static table
  EXPECT_EQ(rec_.requests[1].path, "/a");     // nghttp2 never indexes :path values
  EXPECT_EQ(rec_.requests[1].authority, "");  // an entry inserted by the first request
  EXPECT_EQ(rec_.requests[1].stream_id, 3u);
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 2u);

  // New literals decode, and once inserted they are referred to at the indexes the table has.
  Feed(p_, kReq, c_.Request(5, Get("/new", "other.example")), 30);
  Feed(p_, kReq, c_.Request(7, Get("/new", "other.example")), 40);
  ASSERT_EQ(rec_.requests.size(), 4u);
  for (size_t i : {2, 3}) {
    EXPECT_EQ(rec_.requests[i].path, "/new");
    EXPECT_EQ(rec_.requests[i].authority, "other.example");
  }
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 2u);

  for (uint32_t id : {1, 3, 5, 7}) Feed(p_, kResp, c_.Response(id, Status(200), true), 50 + id);
  ASSERT_EQ(rec_.responses.size(), 4u);
  for (const Http2Response& r : rec_.responses) EXPECT_EQ(r.status, 200);
  EXPECT_EQ(p_.state(), State::kActive);
}

TEST_F(Http2ParserTest, UnknownNameStillInsertsItsEntry) {
  Open();
  Headers big = Get("/a");
  big.emplace_back("cookie", std::string(2000, 'c'));
  big.emplace_back("x-request-id", "r1");
  Feed(p_, kReq, c_.Request(1, big), 10, 256);
  // "x-request-id" is now a name the parser never saw, used again with a new value: the entry it
  // inserts moves the one for "other.example" inserted just before it.
  Headers next = Get("/b", "other.example");
  next.emplace_back("x-request-id", "r2");
  Feed(p_, kReq, c_.Request(3, next), 20);
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 2u);
  Feed(p_, kReq, c_.Request(5, Get("/c", "other.example")), 30);
  ASSERT_EQ(rec_.requests.size(), 3u);
  EXPECT_EQ(rec_.requests[1].authority, "other.example");
  EXPECT_EQ(rec_.requests[2].authority, "other.example");
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 2u);
}

TEST_F(Http2ParserTest, ResponseHeaderBlockPastThePrefix) {
  Open();
  Feed(p_, kReq, Join({c_.Request(1, Get("/a")), c_.Request(3, Get("/b"))}), 10);
  Headers h = {{":status", "201"}, {"set-cookie", std::string(3000, 's')}};
  Feed(p_, kResp, c_.Response(1, h, true), 20, 100);
  // Ends by END_STREAM from the frame header even though the block was cut.
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 201);
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 1u);
  // ":status 201" is now a dynamic entry the parser lost: unknown, yet the response is counted.
  Feed(p_, kResp, c_.Response(3, {{":status", "201"}}, true), 30);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].status, 0);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 2u);
}

TEST_F(Http2ParserTest, HeaderTableSizeRaisedBySettingsFromThePeer) {
  Encoder client(65536);
  Feed(p_, kReq, ClientOpen(), 1);
  // The server's decoder allows 16 KiB, so the client's encoder may use that much.
  Feed(p_, kResp, Settings({{kHeaderTableSize, 16384}}), 2);
  client.ChangeTableSize(16384);
  auto path = [](int i) { return "/" + std::string(1000, 'a') + std::to_string(i); };
  uint32_t id = 1;
  // Five 1 KB paths fill more than the default 4 KiB table; then all are referred to again.
  Feed(p_, kReq, SettingsAck(), 3);
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 5; ++i) {
      Feed(p_, kReq, Frame(kHeaders, kEndHeaders | kEndStream, id, client.Encode(Get(path(i)))),
           10 + id);
      id += 2;
    }
  }
  ASSERT_EQ(rec_.requests.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(rec_.requests[i].path, path(i % 5).substr(0, 256)) << i;
    EXPECT_EQ(rec_.requests[i].authority, "example.com");
  }
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, HeaderTableSettingsApplyToTheOppositeDirection) {
  Encoder client(65536);
  // The client's own SETTINGS bound the server's encoder, not the client's.
  Feed(p_, kReq, std::string(kPreface) + Settings({{kHeaderTableSize, 16384}}), 1);
  Feed(p_, kResp, ServerOpen(), 2);
  client.ChangeTableSize(16384);
  Feed(p_, kReq, Frame(kHeaders, kEndHeaders | kEndStream, 1, client.Encode(Get("/x"))), 10);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 1u);  // a table size update past the limit
  EXPECT_EQ(rec_.requests[0].path, "/x");
}

TEST_F(Http2ParserTest, HeaderTableSizeReducedToZero) {
  Feed(p_, kReq, ClientOpen(), 1);
  Feed(p_, kResp, Settings({{kHeaderTableSize, 0}}), 2);
  c_.client.ChangeTableSize(0);
  for (uint32_t id : {1, 3, 5}) Feed(p_, kReq, SettingsAck() + c_.Request(id, Get("/z")), id);
  ASSERT_EQ(rec_.requests.size(), 3u);
  for (const Http2Request& q : rec_.requests) EXPECT_EQ(q.path, "/z");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, ContinuationFramesWithPaddingAndPriority) {
  Open();
  const std::string block = c_.client.Encode(GrpcCall("Chat"));
  ASSERT_GT(block.size(), 12u);
  // HEADERS: pad length 3, the 5-byte priority fields, the first piece, 3 bytes of padding.
  std::string first = std::string(1, '\3') + std::string("\0\0\0\0\x10", 5) + block.substr(0, 5) +
                      std::string(3, '\0');
  Feed(p_, kReq,
       Frame(kHeaders, kPadded | kPriority, 1, first) +
           Frame(kContinuation, 0, 1, block.substr(5, 4)),
       10);
  EXPECT_TRUE(rec_.requests.empty());
  Feed(p_, kReq, Frame(kContinuation, kEndHeaders, 1, block.substr(9)), 20);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].path, "/helloworld.Greeter/Chat");
  EXPECT_TRUE(rec_.requests[0].grpc);
  EXPECT_EQ(rec_.requests[0].headers_end_ns, 20u);

  const std::string trailers = c_.server.Encode(GrpcTrailers(0));
  Feed(
      p_, kResp,
      Join({c_.Response(1, GrpcHeaders()), Frame(kHeaders, kEndStream, 1, trailers.substr(0, 1))}) +
          Frame(kContinuation, kEndHeaders, 1, trailers.substr(1)),
      30);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].grpc_status, 0);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, BrokenContinuationSequenceIsAProtocolError) {
  Open();
  const std::string block = c_.client.Encode(Get("/"));
  Feed(p_, kReq, Frame(kHeaders, 0, 1, block.substr(0, 2)) + Frame(kPing, 0, 0, "12345678"), 10);
  EXPECT_EQ(rec_.Count(Http2Error::kProtocol), 1u);
  EXPECT_EQ(p_.state(), State::kGaveUp);
}

TEST_F(Http2ParserTest, RstStreamCutsOff) {
  Open();
  Feed(p_, kReq,
       Join({c_.Request(1, Get("/server-resets")), c_.Request(3, Get("/client-cancels"))}), 10);
  Feed(p_, kResp, c_.Response(1, Status(200)) + Data(1, "partial", false) + RstStream(1), 20);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_TRUE(rec_.responses[0].cut_off);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].end_ns, 20u);
  Feed(p_, kReq, RstStream(3), 30);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_TRUE(rec_.responses[1].cut_off);
  EXPECT_EQ(rec_.responses[1].status, 0);
  EXPECT_EQ(rec_.responses[1].request.path, "/client-cancels");
  // Frames still in flight on reset streams count nothing.
  Feed(p_, kResp, c_.Response(3, Status(200), true) + Data(1, "", true) + RstStream(1), 40);
  EXPECT_EQ(rec_.responses.size(), 2u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, AbandonCountsOpenStreamsWithoutCuttingThemOff) {
  Open();
  Feed(p_, kReq, Join({c_.Request(1, Get("/done")), c_.Request(3, Get("/waiting"))}), 10);
  Feed(p_, kResp, c_.Response(1, Status(200), true), 20);
  ASSERT_EQ(rec_.responses.size(), 1u);
  // The agent sheds the connection (its CPU budget) while /waiting waits.
  EXPECT_EQ(p_.Abandon(), 1u);
  EXPECT_EQ(p_.state(), State::kGaveUp);
  // No cut-off response for it, now or at close; later frames count nothing.
  Feed(p_, kResp, c_.Response(3, Status(200), true), 30);
  p_.OnClose(40);
  EXPECT_EQ(rec_.responses.size(), 1u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, ResetAfterTheResponseEndedCountsNothing) {
  Open();
  Feed(p_, kReq, c_.Request(1, Get("/upload"), false), 10);
  Feed(p_, kResp, c_.Response(1, Status(413), true) + RstStream(1, 0), 20);
  Feed(p_, kReq, RstStream(1), 30);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_FALSE(rec_.responses[0].cut_off);
  EXPECT_EQ(rec_.responses[0].status, 413);
}

TEST_F(Http2ParserTest, GoawayCutsOffStreamsPastTheLastOne) {
  Open();
  Feed(p_, kReq,
       Join({c_.Request(1, Get("/1")), c_.Request(3, Get("/3")), c_.Request(5, Get("/5")),
             c_.Request(7, Get("/7"))}),
       10);
  Feed(p_, kResp, Goaway(3), 20);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].request.path, "/5");
  EXPECT_EQ(rec_.responses[1].request.path, "/7");
  EXPECT_TRUE(rec_.responses[0].cut_off && rec_.responses[1].cut_off);
  Feed(p_, kResp, Join({c_.Response(3, Status(200), true), c_.Response(1, Status(200), true)}), 30);
  ASSERT_EQ(rec_.responses.size(), 4u);
  EXPECT_FALSE(rec_.responses[2].cut_off);
  EXPECT_FALSE(rec_.responses[3].cut_off);
  // A client's GOAWAY concerns pushed streams only.
  Feed(p_, kReq, c_.Request(9, Get("/9")) + Goaway(0), 40);
  EXPECT_EQ(rec_.responses.size(), 4u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, CloseCutsOffOpenStreams) {
  Open();
  Feed(p_, kReq,
       Join({c_.Request(1, Get("/1")), c_.Request(3, Get("/3")), c_.Request(5, Get("/5"))}), 10);
  Feed(p_, kResp, Join({c_.Response(3, Status(200), true), c_.Response(5, Status(502))}), 20);
  p_.OnClose(30);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[1].request.path, "/1");
  EXPECT_TRUE(rec_.responses[1].cut_off);
  EXPECT_EQ(rec_.responses[1].status, 0);
  EXPECT_EQ(rec_.responses[2].request.path, "/5");
  EXPECT_TRUE(rec_.responses[2].cut_off);
  EXPECT_EQ(rec_.responses[2].status, 502);
  EXPECT_EQ(rec_.responses[2].end_ns, 30u);
  Feed(p_, kResp, c_.Response(1, Status(200), true), 40);
  p_.OnClose(50);
  EXPECT_EQ(rec_.responses.size(), 3u);
}

TEST_F(Http2ParserTest, InterimContinueIsSkipped) {
  Open();
  Headers h = Get("/upload");
  h[0].second = "PUT";
  h.emplace_back("expect", "100-continue");
  Feed(p_, kReq, c_.Request(1, h, false), 10);
  Feed(p_, kResp, c_.Response(1, Status(100)), 20);
  Feed(p_, kReq, Data(1, "body", true), 30);
  Feed(p_, kResp, c_.Response(1, Status(201)), 40);
  Feed(p_, kResp, Data(1, "created", true), 50);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 201);
  EXPECT_EQ(rec_.responses[0].request.method, "PUT");
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 50u);
}

TEST_F(Http2ParserTest, ClientTrailersAreNotARequest) {
  Open();
  Feed(p_, kReq, c_.Request(1, GrpcCall("Upload"), false) + Data(1, "chunk", false), 10);
  Feed(p_, kResp, Join({c_.Response(1, GrpcHeaders()), c_.Response(1, GrpcTrailers(0), true)}), 20);
  Feed(p_, kReq, c_.Request(1, {{"x-checksum", "abc"}}, true), 30);
  EXPECT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.responses.size(), 1u);
}

TEST_F(Http2ParserTest, PushPromiseBlocksKeepTheTableRight) {
  Open();
  Feed(p_, kReq, Join({c_.Request(1, Get("/index.html")), c_.Request(3, Get("/other.html"))}), 10);
  // 203 is not in the static table: the first use inserts it, the second refers to it by an index
  // that the pushed request's headers, inserted in between, have moved.
  const std::string first = c_.Response(1, Status(203), true);
  const std::string promise = std::string("\0\0\0\2", 4) + c_.server.Encode(Get("/style.css"));
  Feed(p_, kResp,
       Join({first, Frame(kPushPromise, kEndHeaders, 1, promise), c_.Response(2, Status(200)),
             Data(2, "css", true), c_.Response(3, Status(203), true)}),
       20);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].status, 203);
  EXPECT_EQ(rec_.responses[1].status, 203);
  EXPECT_EQ(rec_.responses[1].request.stream_id, 3u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http2ParserTest, FrameTooLarge) {
  Http2Parser p(&rec_, {.max_frame_size = 16384});
  Feed(p, kReq, ClientOpen(), 1);
  Feed(p, kResp, ServerOpen() + FrameHeader(20000, kData, 0, 1), 2);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kFrameTooLarge});
  EXPECT_EQ(p.state(), State::kGaveUp);
}

TEST_F(Http2ParserTest, BadPreface) {
  Feed(p_, kReq, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kBadPreface});
  EXPECT_EQ(p_.state(), State::kGaveUp);
  Feed(p_, kReq, ClientOpen(), 2);
  EXPECT_EQ(rec_.errors.size(), 1u);
}

TEST_F(Http2ParserTest, PrefaceBrokenInItsLastByte) {
  Feed(p_, kReq, kPreface.substr(0, 20), 1);
  EXPECT_EQ(p_.state(), State::kActive);
  Feed(p_, kReq, "\r\n\rX", 2);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kBadPreface});
}

TEST_F(Http2ParserTest, FirstFrameMustBeSettings) {
  Feed(p_, kReq, ClientOpen(), 1);
  Feed(p_, kResp, "HTTP/1.1 400 Bad Request\r\n\r\n", 2);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kProtocol});
}

TEST_F(Http2ParserTest, FrameHeaderPastThePrefixLosesSync) {
  Open();
  Feed(p_, kReq, c_.Request(1, Get("/")), 10);
  // The DATA frame's header lies past the 20 captured bytes.
  Feed(p_, kResp, c_.Response(1, Status(200)) + Frame(kPing, 0, 0, "12345678") + Data(1, "x", true),
       20, 20);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kLostSync});
  EXPECT_EQ(p_.state(), State::kGaveUp);
  p_.OnClose(30);
  EXPECT_TRUE(rec_.responses.empty());
}

TEST_F(Http2ParserTest, TooManyOpenStreams) {
  Http2Parser p(&rec_, {.max_open_streams = 2});
  Feed(p, kReq, ClientOpen(), 1);
  Feed(p, kReq, Join({c_.Request(1, Get("/1")), c_.Request(3, Get("/3"))}), 10);
  EXPECT_EQ(p.state(), State::kActive);
  Feed(p, kReq, c_.Request(5, Get("/5")), 20);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kProtocol});
  EXPECT_EQ(p.state(), State::kGaveUp);
  EXPECT_EQ(rec_.requests.size(), 2u);
}

TEST_F(Http2ParserTest, HeaderBlockPastTheBufferLimitIsTreatedAsCut) {
  Http2Parser p(&rec_, {.max_header_block = 64});
  Feed(p, kReq, ClientOpen(), 1);
  Headers h = Get("/long");
  h.emplace_back("x-pad", std::string(500, 'p'));
  Feed(p, kReq, c_.Request(1, h), 10);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].path, "/long");
  EXPECT_EQ(rec_.Count(Http2Error::kHpackFailed), 1u);
  EXPECT_EQ(p.state(), State::kActive);
}

TEST_F(Http2ParserTest, StreamFramesOnStreamZeroAreAProtocolError) {
  Open();
  Feed(p_, kReq, Frame(kHeaders, kEndHeaders, 0, c_.client.Encode(Get("/"))), 10);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kProtocol});
  EXPECT_TRUE(rec_.requests.empty());
}

TEST_F(Http2ParserTest, PaddingLongerThanTheFrame) {
  Open();
  Feed(p_, kReq, Frame(kHeaders, kEndHeaders | kPadded, 1, "\x09\x82"), 10);
  EXPECT_EQ(rec_.errors, std::vector<Http2Error>{Http2Error::kProtocol});
}

}  // namespace
}  // namespace podtap
