// The HTTP/1.x parser against split, truncated, pipelined and hostile byte streams.
#include "agent/protocols/http1_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace podtap {
namespace {

constexpr HttpStream kReq = HttpStream::kRequest;
constexpr HttpStream kResp = HttpStream::kResponse;
using State = Http1Parser::State;

struct Recorder : Http1Sink {
  std::vector<Http1Request> requests;
  std::vector<Http1Response> responses;
  std::vector<Http1Error> errors;
  size_t unanswered = 0;
  void OnRequest(const Http1Request& r) override { requests.push_back(r); }
  void OnResponse(const Http1Response& r) override { responses.push_back(r); }
  void OnError(Http1Error e) override { errors.push_back(e); }
  void OnUnanswered(size_t n) override { unanswered += n; }
};

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// One syscall of `bytes`, of which the kernel captured the first `prefix`.
void Feed(Http1Parser& p, HttpStream s, std::string_view bytes, uint64_t ts,
          size_t prefix = std::numeric_limits<size_t>::max()) {
  p.Feed(s, Bytes(bytes.substr(0, std::min(prefix, bytes.size()))), bytes.size(), ts);
}

// A syscall of total_len bytes whose captured part is `captured`.
void FeedBlind(Http1Parser& p, HttpStream s, std::string_view captured, uint64_t total_len,
               uint64_t ts) {
  p.Feed(s, Bytes(captured), total_len, ts);
}

std::string Get(std::string_view path, std::string_view host = "example.com") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + std::string(host) +
         "\r\nAccept: */*\r\n\r\n";
}

std::string Ok(std::string_view body, int status = 200) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

// A realistic header of about n bytes, so that headers outgrow a 256-byte prefix.
std::string Filler(size_t n) { return "X-Filler: " + std::string(n, 'f') + "\r\n"; }

class Http1ParserTest : public ::testing::Test {
 protected:
  Recorder rec_;
  Http1Parser p_{&rec_};
};

TEST_F(Http1ParserTest, SimpleGetAndOk) {
  Feed(p_, kReq, "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n", 10);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].method, "GET");
  EXPECT_EQ(rec_.requests[0].authority, "example.com");
  EXPECT_EQ(rec_.requests[0].path, "/index.html");
  EXPECT_EQ(rec_.requests[0].headers_end_ns, 10u);
  EXPECT_EQ(p_.state(), State::kHttp);
  EXPECT_TRUE(rec_.responses.empty());

  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 25);
  ASSERT_EQ(rec_.responses.size(), 1u);
  const Http1Response& r = rec_.responses[0];
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.request.path, "/index.html");
  EXPECT_EQ(r.request.headers_end_ns, 10u);
  EXPECT_EQ(r.first_byte_ns, 25u);
  EXPECT_EQ(r.end_ns, 25u);
  EXPECT_FALSE(r.cut_off);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, KeepAliveThreeExchanges) {
  const int statuses[] = {200, 404, 503};
  for (int i = 0; i < 3; ++i) {
    uint64_t t = 100 * (i + 1);
    Feed(p_, kReq, Get("/item/" + std::to_string(i)), t);
    // Headers and body in separate writes: the body's write is both its first body byte (the
    // latency's end, as Linkerd's first DATA frame) and its end.
    Feed(p_, kResp, "HTTP/1.1 " + std::to_string(statuses[i]) + " X\r\nContent-Length: 3\r\n\r\n",
         t + 1);
    EXPECT_EQ(rec_.responses.size(), static_cast<size_t>(i));
    Feed(p_, kResp, "abc", t + 2);
  }
  ASSERT_EQ(rec_.responses.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    uint64_t t = 100 * (i + 1);
    EXPECT_EQ(rec_.responses[i].status, statuses[i]);
    EXPECT_EQ(rec_.responses[i].request.path, "/item/" + std::to_string(i));
    EXPECT_EQ(rec_.responses[i].first_byte_ns, t + 2);
    EXPECT_EQ(rec_.responses[i].end_ns, t + 2);
  }
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, AtRestOnlyBetweenMessagesAndAResetOneGoesOnAsIt) {
  EXPECT_FALSE(p_.AtRest());  // HTTP/1.x not seen yet
  Feed(p_, kReq, Get("/a"), 10);
  EXPECT_FALSE(p_.AtRest());  // a request waits for its response
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 11);
  EXPECT_FALSE(p_.AtRest());  // its body is still to come
  Feed(p_, kResp, "abc", 12);
  EXPECT_TRUE(p_.AtRest());
  Feed(p_, kReq, Get("/b").substr(0, 10), 20);
  EXPECT_FALSE(p_.AtRest());  // a head split across reads is buffered
  Feed(p_, kReq, Get("/b").substr(10), 21);
  Feed(p_, kResp, Ok("xy"), 22);
  ASSERT_TRUE(p_.AtRest());

  // Another parser, reset as one at rest, takes the connection's next exchange; garbage then
  // is lost framing on a connection known to be HTTP, not "not HTTP".
  Recorder other;
  Http1Parser q(&other);
  Feed(q, kReq, "garbage", 1);
  ASSERT_EQ(q.state(), State::kGaveUp);
  q.Reset(&rec_, true);
  EXPECT_TRUE(q.AtRest());
  Feed(q, kReq, Get("/c"), 30);
  Feed(q, kResp, Ok("z"), 31);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[2].request.path, "/c");
  EXPECT_EQ(rec_.responses[2].first_byte_ns, 31u);
  Feed(q, kReq, "\x01\x02", 40);
  EXPECT_EQ(rec_.errors, std::vector<Http1Error>{Http1Error::kLostSync});
  EXPECT_EQ(q.state(), State::kHttp);

  // Reset as new: not HTTP is refused on sight.
  q.Reset(&other, false);
  EXPECT_FALSE(q.AtRest());
  Feed(q, kReq, "\x01\x02", 50);
  EXPECT_EQ(q.state(), State::kGaveUp);
}

TEST_F(Http1ParserTest, PipelinedRequestsAndResponsesInOneFeedEach) {
  Feed(p_, kReq, Get("/a") + Get("/b") + Get("/c"), 1);
  ASSERT_EQ(rec_.requests.size(), 3u);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kResp,
       Ok("1") + Ok("", 404) +
           "HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       2);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[0].request.path, "/a");
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.responses[1].status, 404);
  EXPECT_EQ(rec_.responses[2].request.path, "/c");
  EXPECT_EQ(rec_.responses[2].status, 500);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ContentLengthBodiesPastThePrefixAreCounted) {
  std::string body(100000, 'b');
  Feed(p_, kReq, "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + body, 1,
       256);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].method, "POST");

  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
  Feed(p_, kResp, head + body.substr(0, 40000), 2, 256);
  EXPECT_TRUE(rec_.responses.empty());
  // The rest of the body happens to look like a response: it is still body.
  std::string rest = Ok("trap");
  rest += std::string(60000 - rest.size(), 'b');
  Feed(p_, kResp, rest, 3, 256);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].end_ns, 3u);

  Feed(p_, kReq, Get("/next"), 4, 256);
  Feed(p_, kResp, Ok("", 204), 5, 256);
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_EQ(rec_.requests[1].path, "/next");
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].status, 204);
  EXPECT_EQ(rec_.responses[1].request.path, "/next");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ChunkedResponseAcrossFeeds) {
  Feed(p_, kReq, Get("/stream"), 1);
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 2);
  Feed(p_, kResp, "5\r\nhel", 3);
  Feed(p_, kResp, "lo\r\n1", 4);  // chunk-size line split across Feeds
  Feed(p_, kResp, "0;ext=1\r\n0123456789abcdef\r", 5);
  Feed(p_, kResp, "\n0\r\nTrailer-A: x\r\n", 6);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kResp, "\r\n", 7);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 3u);  // the first chunk's data, not the head
  EXPECT_EQ(rec_.responses[0].end_ns, 7u);
  EXPECT_TRUE(rec_.errors.empty());
  // Still in step: the next exchange parses.
  Feed(p_, kReq, Get("/after"), 8);
  Feed(p_, kResp, Ok("x", 201), 9);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].status, 201);
  EXPECT_EQ(rec_.responses[1].request.path, "/after");
}

TEST_F(Http1ParserTest, ChunkedDataPastThePrefixIsSkippedByCount) {
  Feed(p_, kReq, Get("/big"), 1);
  std::string data(1000, 'd');
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + data + "\r\n", 2,
       256);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kResp, "0\r\n\r\n", 3, 256);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].end_ns, 3u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ChunkLinePastThePrefixLosesSyncThenResyncs) {
  Feed(p_, kReq, Get("/a"), 1);
  std::string data(300, 'd');
  // The second chunk-size line lies past the 256 captured bytes.
  Feed(p_, kResp,
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" + data + "\r\n5\r\nhello\r\n",
       2, 256);
  ASSERT_EQ(rec_.errors.size(), 1u);
  EXPECT_EQ(rec_.errors[0], Http1Error::kLostSync);
  EXPECT_EQ(p_.state(), State::kHttp);
  FeedBlind(p_, kResp, "more chunk bytes", 4000, 3);  // still the lost response
  Feed(p_, kResp, "\r\n0\r\n\r\n", 4);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kReq, Get("/b"), 5);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].request.path, "/a");
  EXPECT_EQ(rec_.responses[0].end_ns, 4u);
  EXPECT_FALSE(rec_.responses[0].cut_off);
  // The next Feed starting with "HTTP/1." starts the next response.
  Feed(p_, kResp, Ok("ok", 202), 6);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].status, 202);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.responses[1].end_ns, 6u);
  EXPECT_EQ(rec_.errors.size(), 1u);
}

TEST_F(Http1ParserTest, LostResponseEndsAtTheNextResponseStart) {
  Feed(p_, kReq, Get("/a") + Get("/b"), 1);
  std::string data(300, 'd');
  Feed(p_, kResp,
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" + data + "\r\n0\r\n\r\nX", 2,
       256);
  FeedBlind(p_, kResp, "", 0, 3);  // an empty read changes nothing
  FeedBlind(p_, kResp, "tail", 10, 4);
  Feed(p_, kResp, Ok("", 404), 5);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].request.path, "/a");
  EXPECT_EQ(rec_.responses[0].end_ns, 4u);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.responses[1].status, 404);
}

TEST_F(Http1ParserTest, LastChunkPastThePrefixEndsTheResponse) {
  Feed(p_, kReq, Get("/a"), 1);
  std::string data(300, 'd');
  Feed(p_, kResp,
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" + data + "\r\n0\r\n\r\n", 2,
       256);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, HeadResponseHasNoBodyWhateverItsContentLength) {
  Feed(p_, kReq, "HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n", 1);
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 2);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].request.method, "HEAD");
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  Feed(p_, kReq, Get("/next"), 3);
  Feed(p_, kResp, Ok("abc"), 4);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].request.path, "/next");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ABodyRunningToTheCloseStartsWithItsFirstWrite) {
  Feed(p_, kReq, Get("/old"), 1);
  Feed(p_, kResp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", 2);
  Feed(p_, kResp, "xyz", 5);
  Feed(p_, kResp, "more", 6);
  p_.OnClose(7);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 5u);
  EXPECT_EQ(rec_.responses[0].end_ns, 7u);
  EXPECT_FALSE(rec_.responses[0].cut_off);
}

TEST_F(Http1ParserTest, ContinueIsNotTheFinalResponse) {
  Feed(p_, kReq,
       "POST /form HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", 1);
  Feed(p_, kResp, "HTTP/1.1 100 Continue\r\n\r\n", 2);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kReq, "abcd", 3);
  Feed(p_, kResp, Ok("", 201), 4);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 201);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 0u);  // no body: its end counts
  EXPECT_EQ(rec_.responses[0].end_ns, 4u);
  EXPECT_EQ(rec_.responses[0].request.path, "/form");
  // Interim and final in one write.
  Feed(p_, kReq, Get("/hints"), 5);
  Feed(p_, kResp, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + Ok("x"), 6);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].status, 200);
  EXPECT_EQ(rec_.responses[1].request.path, "/hints");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, NoContentAndNotModifiedHaveNoBody) {
  Feed(p_, kReq, Get("/a") + Get("/b") + Get("/c"), 1);
  Feed(p_, kResp, "HTTP/1.1 204 No Content\r\n\r\n", 2);
  Feed(p_, kResp, "HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n", 3);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].status, 204);
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  EXPECT_EQ(rec_.responses[1].status, 304);
  EXPECT_EQ(rec_.responses[1].end_ns, 3u);
  Feed(p_, kResp, Ok("z"), 4);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[2].request.path, "/c");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, SwitchingProtocolsGivesUpAfterReporting) {
  Feed(p_, kReq, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       1);
  Feed(p_, kResp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 2);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 101);
  EXPECT_EQ(rec_.responses[0].request.path, "/ws");
  EXPECT_EQ(p_.state(), State::kGaveUp);
  EXPECT_TRUE(rec_.errors.empty());
  Feed(p_, kReq, Get("/ignored"), 3);
  p_.OnClose(4);
  EXPECT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.responses.size(), 1u);
}

TEST_F(Http1ParserTest, ConnectTunnelGivesUpButARefusedOneContinues) {
  Feed(p_, kReq, "CONNECT db.internal:5432 HTTP/1.1\r\n\r\n", 1);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].authority, "db.internal:5432");
  Feed(p_, kResp, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", 2);
  EXPECT_EQ(p_.state(), State::kHttp);
  Feed(p_, kReq, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", 3);
  ASSERT_EQ(rec_.requests.size(), 2u);
  Feed(p_, kReq, "\x16\x03\x01 tunnelled bytes", 4);  // an eager client: tunnel data
  Feed(p_, kResp, "HTTP/1.1 200 Connection Established\r\n\r\n", 5);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].status, 407);
  EXPECT_EQ(rec_.responses[1].status, 200);
  EXPECT_EQ(p_.state(), State::kGaveUp);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, BodyUntilCloseEndsAtCloseNotCutOff) {
  Feed(p_, kReq, "GET /old HTTP/1.0\r\nHost: h\r\n\r\n", 1);
  Feed(p_, kResp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome", 2);
  FeedBlind(p_, kResp, "more", 50000, 3);
  EXPECT_TRUE(rec_.responses.empty());
  p_.OnClose(9);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 2u);
  EXPECT_EQ(rec_.responses[0].end_ns, 9u);
  EXPECT_FALSE(rec_.responses[0].cut_off);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ConnectionCloseWithLengthEndsAtTheLength) {
  Feed(p_, kReq, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 1);
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", 2);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  p_.OnClose(3);
  EXPECT_EQ(rec_.responses.size(), 1u);
}

TEST(Http1Parser, EverySplitPointGivesTheSameExchange) {
  const std::string body = "{\"qty\": 12}";
  const std::string req =
      "POST /api/v1/orders?id=7 HTTP/1.1\r\nHost: shop.example:8080\r\nUser-Agent: podtap/1.0"
      "\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\nX-Request-Id: "
      "0123456789abcdef\r\nContent-Length: 11"
      "\r\n\r\n" +
      body;
  const std::string resp =
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
      "Transfer-Encoding: chunked\r\nServer: podtap-test-server/1.0\r\nVary: "
      "Accept\r\n\r\n7\r\n{\"id\":7\r\n1;x=y\r\n}\r\n0\r\n"
      "X-Trailer: 1\r\n\r\n";
  ASSERT_GT(req.size(), 180u);
  ASSERT_GT(resp.size(), 180u);
  const size_t head_end = req.size() - body.size();  // one past the header block's last byte
  // The response's first body byte: the first chunk's data, after "7\r\n".
  const size_t first_data = resp.find("\r\n\r\n") + 4 + 3;
  auto check = [&](const Recorder& rec, uint64_t headers_end_ns, uint64_t first_byte_ns,
                   const std::string& where) {
    ASSERT_EQ(rec.requests.size(), 1u) << where;
    EXPECT_EQ(rec.requests[0].method, "POST") << where;
    EXPECT_EQ(rec.requests[0].path, "/api/v1/orders") << where;
    EXPECT_EQ(rec.requests[0].authority, "shop.example:8080") << where;
    EXPECT_EQ(rec.requests[0].headers_end_ns, headers_end_ns) << where;
    ASSERT_EQ(rec.responses.size(), 1u) << where;
    EXPECT_EQ(rec.responses[0].status, 201) << where;
    EXPECT_EQ(rec.responses[0].first_byte_ns, first_byte_ns) << where;
    EXPECT_EQ(rec.responses[0].end_ns, 4u) << where;
    EXPECT_TRUE(rec.errors.empty()) << where;
  };
  for (size_t i = 1; i < req.size(); ++i) {
    for (size_t j = 1; j < resp.size(); ++j) {
      Recorder rec;
      Http1Parser p(&rec);
      Feed(p, kReq, std::string_view(req).substr(0, i), 1);
      Feed(p, kReq, std::string_view(req).substr(i), 2);
      Feed(p, kResp, std::string_view(resp).substr(0, j), 3);
      Feed(p, kResp, std::string_view(resp).substr(j), 4);
      check(rec, i >= head_end ? 1 : 2, j > first_data ? 3 : 4,
            "request split at " + std::to_string(i) + ", response at " + std::to_string(j));
    }
  }
  Recorder rec;
  Http1Parser p(&rec);
  for (size_t i = 0; i < req.size(); ++i) {
    Feed(p, kReq, std::string_view(req).substr(i, 1), i == head_end - 1 ? 2 : 1);
  }
  for (size_t j = 0; j < resp.size(); ++j) {
    Feed(p, kResp, std::string_view(resp).substr(j, 1), j + 1 == resp.size() ? 4 : 3);
  }
  check(rec, 2, 3, "byte by byte");
}

TEST_F(Http1ParserTest, RequestHeadersLargerThanThePrefix) {
  std::string req = "GET /profile?tab=1 HTTP/1.1\r\nHost: app.example\r\n" + Filler(400) +
                    "Content-Length: 0\r\n\r\n";
  Feed(p_, kReq, req, 7, 256);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].path, "/profile");
  EXPECT_EQ(rec_.requests[0].authority, "app.example");
  EXPECT_EQ(rec_.requests[0].headers_end_ns, 7u);
  // Body bytes in later writes belong to it, even those that begin like a request line; the
  // next request is found by its start.
  Feed(p_, kReq, "GET / is what this body says", 8, 256);
  Feed(p_, kReq, std::string(1000, 'z'), 9, 256);
  EXPECT_EQ(rec_.requests.size(), 1u);
  Feed(p_, kReq, "GET /foo", 10, 256);
  EXPECT_EQ(rec_.requests.size(), 1u);
  Feed(p_, kReq, Get("/second"), 11, 256);
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_EQ(rec_.requests[1].path, "/second");
  EXPECT_EQ(rec_.requests[1].headers_end_ns, 11u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, RequestBodyAfterCutHeadersIsSkippedByCount) {
  Feed(p_, kReq, "PUT /obj HTTP/1.1\r\nHost: h\r\nContent-Length: 500\r\n" + Filler(400) + "\r\n",
       1, 256);
  ASSERT_EQ(rec_.requests.size(), 1u);
  std::string body = Get("/inside-the-body");
  body += std::string(500 - body.size(), 'b');
  Feed(p_, kReq, body, 2, 256);
  EXPECT_EQ(rec_.requests.size(), 1u);
  Feed(p_, kReq, Get("/next"), 3, 256);
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_EQ(rec_.requests[1].path, "/next");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, RequestLineLongerThanThePrefixKeepsMethodAndPath) {
  std::string path = "/" + std::string(400, 'p');
  Feed(p_, kReq, "DELETE " + path + "?q HTTP/1.1\r\nHost: h\r\n\r\n", 1, 256);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].method, "DELETE");
  EXPECT_EQ(rec_.requests[0].path, path.substr(0, 256 - 7));
  EXPECT_EQ(rec_.requests[0].authority, "");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ResponseHeadersLargerThanThePrefixWithContentLengthSeen) {
  Feed(p_, kReq, Get("/a"), 1);
  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n" + Filler(500) + "\r\n";
  Feed(p_, kResp, head + std::string(1000, 'b'), 2, 256);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  // Headers in one write, body in the next: the byte count ends it with the body.
  Feed(p_, kReq, Get("/b"), 3);
  Feed(p_, kResp, head, 4, 256);
  EXPECT_EQ(rec_.responses.size(), 1u);
  Feed(p_, kResp, std::string(1000, 'b'), 5, 256);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.responses[1].first_byte_ns, 4u);
  EXPECT_EQ(rec_.responses[1].end_ns, 5u);
  // Within the count, a body write that looks like a response is still body.
  Feed(p_, kReq, Get("/c"), 6);
  Feed(p_, kResp, head, 7, 256);
  std::string trap = Ok("x", 500);
  Feed(p_, kResp, trap + std::string(500 - trap.size(), 'b'), 8, 256);
  EXPECT_EQ(rec_.responses.size(), 2u);
  Feed(p_, kResp, std::string(500, 'b'), 9, 256);
  ASSERT_EQ(rec_.responses.size(), 3u);
  EXPECT_EQ(rec_.responses[2].status, 200);
  EXPECT_EQ(rec_.responses[2].request.path, "/c");
  EXPECT_EQ(rec_.responses[2].end_ns, 9u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, ResponseHeadersLargerThanThePrefixWithoutFramingSeen) {
  Feed(p_, kReq, Get("/a"), 1);
  std::string head = "HTTP/1.1 502 Bad Gateway\r\n" + Filler(500) + "Content-Length: 10\r\n\r\n";
  Feed(p_, kResp, head + "0123456789", 2, 256);
  ASSERT_EQ(rec_.errors.size(), 1u);
  EXPECT_EQ(rec_.errors[0], Http1Error::kLostSync);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kReq, Get("/b"), 3);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].status, 502);
  EXPECT_EQ(rec_.responses[0].first_byte_ns, 2u);
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  Feed(p_, kResp, Ok("fine"), 4);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
}

TEST_F(Http1ParserTest, CutHeadersWithUnreachedLengthAreCutOffAtClose) {
  Feed(p_, kReq, Get("/a"), 1);
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n" + Filler(500) + "\r\n", 2, 256);
  FeedBlind(p_, kResp, "bbbb", 5000, 3);
  EXPECT_TRUE(rec_.responses.empty());
  p_.OnClose(4);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_TRUE(rec_.responses[0].cut_off);
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_EQ(rec_.responses[0].end_ns, 4u);
}

TEST(Http1Parser, MidConnectionAttachWaitsForAMessageStart) {
  Recorder rec;
  Http1Parser p(&rec, {}, Http1Parser::Attach::kMidConnection);
  Feed(p, kReq, std::string("\x16\x03\x01\x00\x05 binary body of an upload", 30), 1);
  Feed(p, kResp, "tail of an earlier response", 2);
  Feed(p, kReq, "SELECT but just body text", 3);
  EXPECT_EQ(p.state(), State::kUnknown);
  EXPECT_TRUE(rec.errors.empty());
  Feed(p, kReq, Get("/real"), 4);
  EXPECT_EQ(p.state(), State::kHttp);
  Feed(p, kResp, Ok("body"), 5);
  ASSERT_EQ(rec.requests.size(), 1u);
  ASSERT_EQ(rec.responses.size(), 1u);
  EXPECT_EQ(rec.responses[0].request.path, "/real");
  EXPECT_EQ(rec.responses[0].status, 200);
  EXPECT_TRUE(rec.errors.empty());
}

TEST(Http1Parser, MidConnectionOrphanResponseIsDroppedOnce) {
  Recorder rec;
  Http1Parser p(&rec, {}, Http1Parser::Attach::kMidConnection);
  Feed(p, kReq, "rest of a request body", 1);
  Feed(p, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", 2);
  Feed(p, kResp, "56789", 3);
  ASSERT_EQ(rec.errors.size(), 1u);
  EXPECT_EQ(rec.errors[0], Http1Error::kResponseWithoutRequest);
  EXPECT_TRUE(rec.responses.empty());
  EXPECT_NE(p.state(), State::kGaveUp);
  Feed(p, kReq, Get("/x"), 4);
  Feed(p, kResp, Ok("", 200), 5);
  ASSERT_EQ(rec.responses.size(), 1u);
  EXPECT_EQ(rec.responses[0].request.path, "/x");
  EXPECT_EQ(rec.errors.size(), 1u);
}

TEST(Http1Parser, MidConnectionWaitIsBounded) {
  Recorder rec;
  Http1Limits limits;
  limits.max_feeds_without_start = 5;
  Http1Parser p(&rec, limits, Http1Parser::Attach::kMidConnection);
  const std::string junk("\x00\x01\x02 binary", 10);
  for (int i = 0; i < 5; ++i) Feed(p, kResp, junk, i);
  EXPECT_EQ(p.state(), State::kUnknown);
  Feed(p, kResp, junk, 6);
  EXPECT_EQ(p.state(), State::kGaveUp);
  ASSERT_EQ(rec.errors.size(), 1u);
  EXPECT_EQ(rec.errors[0], Http1Error::kNotHttp);
}

TEST_F(Http1ParserTest, ResponseWithoutRequestIsDroppedNotFatal) {
  Feed(p_, kResp, Ok("stray"), 1);
  ASSERT_EQ(rec_.errors.size(), 1u);
  EXPECT_EQ(rec_.errors[0], Http1Error::kResponseWithoutRequest);
  EXPECT_TRUE(rec_.responses.empty());
  Feed(p_, kReq, Get("/y"), 2);
  Feed(p_, kResp, Ok("ok"), 3);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].request.path, "/y");
}

TEST(Http1Parser, RejectsWhatIsNotHttpFromTheFirstBytes) {
  const std::string tls_client_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f", 13);
  const std::string binary("\x00\xff\x13\x37\x42GET /", 10);
  const std::vector<std::pair<HttpStream, std::string>> cases = {
      {kReq, tls_client_hello},
      {kReq, binary},
      {kReq, "SELECT 1;\n"},
      {kReq, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
      {kReq, "GET /x RTSP/1.0\r\n\r\n"},
      {kReq, "get / HTTP/1.1\r\n\r\n"},
      {kReq, "*3\r\n$3\r\nSET\r\n"},
      {kResp, "220 mail.example ESMTP\r\n"},
  };
  for (const auto& [stream, bytes] : cases) {
    Recorder rec;
    Http1Parser p(&rec);
    Feed(p, stream, bytes, 1);
    EXPECT_EQ(p.state(), State::kGaveUp) << bytes;
    ASSERT_EQ(rec.errors.size(), 1u) << bytes;
    EXPECT_EQ(rec.errors[0], Http1Error::kNotHttp) << bytes;
    EXPECT_TRUE(rec.requests.empty());
  }
}

TEST(Http1Parser, DecidesOnAFewBytesAndWaitsWhenUnsure) {
  Recorder rec;
  Http1Parser tls(&rec);
  Feed(tls, kReq, "\x16\x03", 1);
  EXPECT_EQ(tls.state(), State::kGaveUp);

  Recorder rec2;
  Http1Parser p(&rec2);
  Feed(p, kReq, "OPT", 1);
  EXPECT_EQ(p.state(), State::kUnknown);
  Feed(p, kReq, "IONS * HTTP/1.1\r\nHost: h\r\n\r\n", 2);
  ASSERT_EQ(rec2.requests.size(), 1u);
  EXPECT_EQ(rec2.requests[0].method, "OPTIONS");
  EXPECT_EQ(rec2.requests[0].path, "*");
  EXPECT_EQ(p.state(), State::kHttp);
}

TEST(Http1Parser, UntrustworthyContentLengthGivesUp) {
  const std::vector<std::string> values = {
      "Content-Length: 12a",
      "Content-Length: -1",
      "Content-Length: +5",
      "Content-Length: 99999999999999999999999",
      "Content-Length: 1099511627777",  // 2^40 + 1
      "Content-Length: 5, 6",
      "Content-Length: 5\r\nContent-Length: 6",
      "Content-Length: ",
      "Content-Length: 0x10",
  };
  for (const std::string& v : values) {
    for (HttpStream stream : {kReq, kResp}) {
      Recorder rec;
      Http1Parser p(&rec);
      if (stream == kResp) Feed(p, kReq, Get("/"), 1);
      Feed(p, stream,
           (stream == kReq ? "POST / HTTP/1.1\r\nHost: h\r\n" : "HTTP/1.1 200 OK\r\n") + v +
               "\r\n\r\n",
           2);
      EXPECT_EQ(p.state(), State::kGaveUp) << v;
      ASSERT_EQ(rec.errors.size(), 1u) << v;
      EXPECT_EQ(rec.errors[0], Http1Error::kBadLength) << v;
      EXPECT_TRUE(rec.responses.empty()) << v;
      EXPECT_EQ(rec.requests.size(), stream == kReq ? 0u : 1u) << v;
    }
  }
}

TEST(Http1Parser, RepeatedEqualContentLengthsAreFine) {
  Recorder rec;
  Http1Parser p(&rec);
  Feed(p, kReq, Get("/"), 1);
  Feed(p, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc", 2);
  ASSERT_EQ(rec.responses.size(), 1u);
  EXPECT_TRUE(rec.errors.empty());
}

TEST(Http1Parser, UntrustworthyChunkSizeGivesUp) {
  const std::vector<std::string> lines = {
      "zz\r\n", "\r\n", "-5\r\n", "5 x\r\n", std::string(65, '0') + "1\r\n", "10000000001\r\n"};
  for (const std::string& line : lines) {
    Recorder rec;
    Http1Parser p(&rec);
    Feed(p, kReq, Get("/"), 1);
    Feed(p, kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + line, 2);
    EXPECT_EQ(p.state(), State::kGaveUp) << line;
    ASSERT_EQ(rec.errors.size(), 1u) << line;
    EXPECT_EQ(rec.errors[0], Http1Error::kBadLength) << line;
    EXPECT_TRUE(rec.responses.empty());
  }
}

TEST(Http1Parser, RequestWithUnframeableTransferEncodingGivesUp) {
  Recorder rec;
  Http1Parser p(&rec);
  Feed(p, kReq, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 1);
  EXPECT_EQ(p.state(), State::kGaveUp);
  ASSERT_EQ(rec.errors.size(), 1u);
  EXPECT_EQ(rec.errors[0], Http1Error::kBadLength);
}

TEST(Http1Parser, TooManyPipelinedGivesUp) {
  Recorder rec;
  Http1Limits limits;
  limits.max_pipelined = 2;
  Http1Parser p(&rec, limits);
  Feed(p, kReq, Get("/1") + Get("/2"), 1);
  EXPECT_EQ(p.state(), State::kHttp);
  Feed(p, kReq, Get("/3"), 2);
  EXPECT_EQ(p.state(), State::kGaveUp);
  EXPECT_EQ(rec.requests.size(), 2u);
  ASSERT_EQ(rec.errors.size(), 1u);
  EXPECT_EQ(rec.errors[0], Http1Error::kTooManyPipelined);
  // The two counted requests will never have a response: said, not dropped silently.
  EXPECT_TRUE(rec.responses.empty());
  EXPECT_EQ(rec.unanswered, 2u);
}

TEST(Http1Parser, GivingUpMidResponseCountsItsRequestAndTheQueuedOnesUnanswered) {
  Recorder rec;
  Http1Parser p(&rec);
  Feed(p, kReq, Get("/1") + Get("/2") + Get("/3"), 1);
  Feed(p, kResp, Ok("one"), 2);
  // The second response's head is malformed: it and the third never end.
  Feed(p, kResp, "HTTP/1.1 200 OK\r\nContent-Length 4\r\n\r\n", 3);
  EXPECT_EQ(p.state(), State::kGaveUp);
  ASSERT_EQ(rec.responses.size(), 1u);
  EXPECT_EQ(rec.requests.size(), 3u);
  EXPECT_EQ(rec.unanswered, 2u);
  p.OnClose(4);  // nothing more after giving up
  EXPECT_EQ(rec.responses.size(), 1u);
  EXPECT_EQ(rec.unanswered, 2u);
}

TEST(Http1Parser, AnUpgradeLeavesNothingUnanswered) {
  Recorder rec;
  Http1Parser p(&rec);
  Feed(p, kReq, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       1);
  Feed(p, kResp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 2);
  EXPECT_EQ(p.state(), State::kGaveUp);
  ASSERT_EQ(rec.responses.size(), 1u);
  EXPECT_EQ(rec.responses[0].status, 101);
  EXPECT_EQ(rec.unanswered, 0u);
}

TEST(Http1Parser, HeadersPastTheLimitGiveUp) {
  Recorder rec;
  Http1Limits limits;
  limits.max_header_bytes = 64;
  Http1Parser p(&rec, limits);
  Feed(p, kReq, "GET / HTTP/1.1\r\nHost: h\r\n", 1);
  Feed(p, kReq, Filler(20), 2);
  EXPECT_EQ(p.state(), State::kUnknown);
  Feed(p, kReq, Filler(20), 3);
  EXPECT_EQ(p.state(), State::kGaveUp);
  ASSERT_EQ(rec.errors.size(), 1u);
  EXPECT_EQ(rec.errors[0], Http1Error::kHeadersTooLarge);
  EXPECT_TRUE(rec.requests.empty());
}

TEST(Http1Parser, MalformedHeaderLineGivesUp) {
  Recorder rec;
  Http1Parser p(&rec);
  Feed(p, kReq, Get("/ok"), 1);
  Feed(p, kReq, "GET / HTTP/1.1\r\nHost h\r\n\r\n", 2);
  EXPECT_EQ(p.state(), State::kGaveUp);
  ASSERT_EQ(rec.errors.size(), 1u);
  EXPECT_EQ(rec.errors[0], Http1Error::kMalformed);
  EXPECT_EQ(rec.requests.size(), 1u);
}

TEST(Http1Parser, OnlyATokenAndAColonMakeAHeaderName) {
  for (std::string line : {"Host h", "Bad Name: x", ": x", "Host :x", "Ho\x01st: x", "Host\r: x"}) {
    for (HttpStream stream : {kReq, kResp}) {
      Recorder rec;
      Http1Parser p(&rec);
      if (stream == kResp) Feed(p, kReq, Get("/"), 1);
      Feed(p, stream,
           (stream == kReq ? "GET / HTTP/1.1\r\n" : "HTTP/1.1 200 OK\r\n") + line + "\r\n\r\n", 2);
      EXPECT_EQ(p.state(), State::kGaveUp) << line;
      EXPECT_EQ(rec.errors, std::vector<Http1Error>{Http1Error::kMalformed}) << line;
    }
  }
}

// A bad line counts only in a head that ends (or is cut) within the limit: past it, the head
// is too large whatever its lines.
TEST(Http1Parser, AHeadPastTheLimitIsTooLargeBeforeItsLinesAreJudged) {
  Http1Limits limits;
  limits.max_header_bytes = 64;
  const std::string head = "GET / HTTP/1.1\r\nBad Name: x\r\n" + Filler(60) + "\r\n";
  Recorder rec;
  Http1Parser p(&rec, limits);
  Feed(p, kReq, head, 1);
  EXPECT_EQ(rec.errors, std::vector<Http1Error>{Http1Error::kHeadersTooLarge});
  Recorder cut_rec;
  Http1Parser cut(&cut_rec, limits);
  Feed(cut, kReq, head, 1, 40);
  EXPECT_EQ(cut_rec.errors, std::vector<Http1Error>{Http1Error::kMalformed});
}

TEST_F(Http1ParserTest, FramingHeadersAreKnownByTheirWholeNameInAnyCase) {
  Feed(p_, kReq,
       "GET / HTTP/1.1\r\nDate: x\r\nHosts: no\r\nX-Host: no\r\nHOST: a\r\nhost: b\r\n"
       "Content-Lengths: 9\r\nTransfer-Encodings: gzip\r\n\r\n",
       1);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].authority, "a");
  Feed(p_, kResp,
       "HTTP/1.1 200 OK\r\nX-Content-Length: 9\r\nCONTENT-LENGTH: 3\r\nContent-Lengthx: 9\r\n"
       "\r\nabc",
       2);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
  Feed(p_, kReq, Get("/"), 3);
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: gzip , Chunked \r\n\r\n1\r\nx\r\n", 4);
  EXPECT_EQ(rec_.responses.size(), 1u);
  Feed(p_, kResp, "0\r\n\r\n", 5);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].end_ns, 5u);
  EXPECT_TRUE(rec_.errors.empty());
  EXPECT_EQ(p_.state(), State::kHttp);
}

// All that a parser told its sink, and where it ended, in one comparable string.
std::string Outcome(const Recorder& rec, const Http1Parser& p) {
  std::string out;
  auto request = [&](const Http1Request& r) {
    out += r.method + " " + r.authority + " " + r.path + " " + std::to_string(r.headers_end_ns);
  };
  for (const Http1Request& r : rec.requests) {
    out += "request ";
    request(r);
    out += "\n";
  }
  for (const Http1Response& r : rec.responses) {
    out += "response " + std::to_string(r.status) + " " + std::to_string(r.first_byte_ns) + " " +
           std::to_string(r.end_ns) + (r.cut_off ? " cut off " : " ");
    request(r.request);
    out += "\n";
  }
  for (Http1Error e : rec.errors) out += std::string("error ") + Http1ErrorName(e) + "\n";
  out += "unanswered " + std::to_string(rec.unanswered) + " state " +
         std::to_string(static_cast<int>(p.state()));
  return out;
}

// A head that arrives whole, in its first Feed, is parsed where it lies in one pass; one that
// is split is buffered and scanned as it grows. Both must come to the same, also when the
// prefix cuts the head, and when a header line is bad.
TEST(Http1Parser, AHeadInOneFeedEndsAsABufferedOne) {
  const std::vector<std::pair<HttpStream, std::string>> messages = {
      {kReq,
       "POST /a?b HTTP/1.1\r\nHost: h:1\r\nX-Fold: a\r\n b\r\nContent-Length: 5\r\n\r\nabcde"},
      {kReq, "GET http://abs.example/p HTTP/1.1\nAccept: */*\n\n"},
      {kReq, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"},
      {kReq, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"},
      {kReq, "GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\nAccept: */*\r\n\r\n"},
      {kReq, "GET / HTTP/1.1\r\nContent-Length: 1, 2\r\nHost: h\r\n\r\n"},
      {kResp, "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 4\r\n\r\nabcd"},
      {kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"},
      {kResp, "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"},
      {kResp, "HTTP/1.1 200 OK\r\nServer: s\r\nNoColon\r\nContent-Length: 4\r\n\r\nabcd"},
  };
  for (const auto& [stream, msg] : messages) {
    // Every prefix the kernel may have captured of the one syscall, then every earlier split.
    for (size_t cut = 1; cut <= msg.size(); ++cut) {
      Recorder whole_rec;
      Http1Parser whole(&whole_rec);
      if (stream == kResp) Feed(whole, kReq, Get("/"), 1);
      FeedBlind(whole, stream, std::string_view(msg).substr(0, cut), msg.size(), 2);
      whole.OnClose(3);
      const std::string want = Outcome(whole_rec, whole);
      for (size_t split = 1; split < cut; ++split) {
        Recorder rec;
        Http1Parser p(&rec);
        if (stream == kResp) Feed(p, kReq, Get("/"), 1);
        Feed(p, stream, std::string_view(msg).substr(0, split), 2);
        FeedBlind(p, stream, std::string_view(msg).substr(split, cut - split), msg.size() - split,
                  2);
        p.OnClose(3);
        ASSERT_EQ(Outcome(rec, p), want) << msg << "\ncaptured " << cut << ", split at " << split;
      }
    }
  }
}

TEST_F(Http1ParserTest, GarbageWhereAMessageShouldStartLosesSyncThenResyncs) {
  Feed(p_, kReq, Get("/a"), 1);
  Feed(p_, kResp, Ok("ab") + "garbage", 2);
  ASSERT_EQ(rec_.responses.size(), 1u);
  ASSERT_EQ(rec_.errors.size(), 1u);
  EXPECT_EQ(rec_.errors[0], Http1Error::kLostSync);
  Feed(p_, kResp, "more garbage", 3);
  Feed(p_, kReq, Get("/b"), 4);
  Feed(p_, kResp, Ok("c", 404), 5);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[1].status, 404);
  EXPECT_EQ(rec_.responses[1].request.path, "/b");
  EXPECT_EQ(rec_.errors.size(), 1u);
}

TEST_F(Http1ParserTest, CloseCutsOffUnansweredRequestsAndUnfinishedBodies) {
  Feed(p_, kReq, Get("/slow") + Get("/queued"), 1);
  Feed(p_, kResp, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", 2);
  p_.OnClose(3);
  ASSERT_EQ(rec_.responses.size(), 2u);
  EXPECT_EQ(rec_.responses[0].request.path, "/slow");
  EXPECT_EQ(rec_.responses[0].status, 200);
  EXPECT_TRUE(rec_.responses[0].cut_off);
  EXPECT_EQ(rec_.responses[0].end_ns, 3u);
  EXPECT_EQ(rec_.responses[1].request.path, "/queued");
  EXPECT_EQ(rec_.responses[1].status, 0);
  EXPECT_EQ(rec_.responses[1].first_byte_ns, 0u);
  EXPECT_TRUE(rec_.responses[1].cut_off);
  EXPECT_EQ(rec_.responses[1].end_ns, 3u);
  // Nothing after the close counts.
  Feed(p_, kResp, Ok(""), 4);
  p_.OnClose(5);
  EXPECT_EQ(rec_.responses.size(), 2u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, StrayCrlfAfterABodyIsIgnored) {
  Feed(p_, kReq, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab\r\n", 1);
  Feed(p_, kReq, "\r\n" + Get("/b"), 2);
  ASSERT_EQ(rec_.requests.size(), 2u);
  EXPECT_EQ(rec_.requests[1].path, "/b");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(Http1ParserTest, PathDropsQueryStringAndFragment) {
  Feed(p_, kReq, Get("/search?q=podtap&page=2"), 1);
  Feed(p_, kReq, Get("/doc#section"), 2);
  Feed(p_, kReq, Get("/?x"), 3);
  ASSERT_EQ(rec_.requests.size(), 3u);
  EXPECT_EQ(rec_.requests[0].path, "/search");
  EXPECT_EQ(rec_.requests[1].path, "/doc");
  EXPECT_EQ(rec_.requests[2].path, "/");
}

TEST_F(Http1ParserTest, AbsoluteFormTarget) {
  Feed(p_, kReq, "GET http://api.example:8080/v1/x?y=1 HTTP/1.1\r\nAccept: */*\r\n\r\n", 1);
  Feed(p_, kReq, "GET HTTPS://other.example HTTP/1.1\r\n\r\n", 2);
  Feed(p_, kReq, "GET http://target.example/p HTTP/1.1\r\nHost: host.example\r\n\r\n", 3);
  ASSERT_EQ(rec_.requests.size(), 3u);
  EXPECT_EQ(rec_.requests[0].authority, "api.example:8080");
  EXPECT_EQ(rec_.requests[0].path, "/v1/x");
  EXPECT_EQ(rec_.requests[1].authority, "other.example");
  EXPECT_EQ(rec_.requests[1].path, "/");
  EXPECT_EQ(rec_.requests[2].authority, "host.example");
  EXPECT_EQ(rec_.requests[2].path, "/p");
}

TEST_F(Http1ParserTest, HostHeaderIsCaseInsensitiveTrimmedAndFirstWins) {
  Feed(p_, kReq, "GET / HTTP/1.1\r\nhOsT: \t Shop.Example:80 \t\r\nHost: second\r\n\r\n", 1);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].authority, "Shop.Example:80");
}

TEST_F(Http1ParserTest, LongFieldsAreBounded) {
  std::string host(1000, 'h');
  std::string path = "/" + std::string(1000, 'p');
  Feed(p_, kReq, Get(path, host), 1);
  ASSERT_EQ(rec_.requests.size(), 1u);
  EXPECT_EQ(rec_.requests[0].authority.size(), 256u);
  EXPECT_EQ(rec_.requests[0].path.size(), 256u);
}

TEST_F(Http1ParserTest, BareLineFeedsAreAccepted) {
  Feed(p_, kReq, "GET /lf HTTP/1.1\nHost: h\n\n", 1);
  Feed(p_, kResp, "HTTP/1.0 200 OK\nContent-Length: 1\n\nx", 2);
  ASSERT_EQ(rec_.responses.size(), 1u);
  EXPECT_EQ(rec_.responses[0].request.path, "/lf");
  EXPECT_EQ(rec_.responses[0].end_ns, 2u);
}

TEST(Http1Parser, ErrorNamesAreDistinctSnakeCase) {
  std::set<std::string> names;
  for (int i = 0; i < static_cast<int>(Http1Error::kCount); ++i) {
    std::string name = Http1ErrorName(static_cast<Http1Error>(i));
    EXPECT_NE(name, "unknown");
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), std::string::npos) << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(Http1Error::kCount));
  EXPECT_STREQ(Http1ErrorName(Http1Error::kLostSync), "lost_sync");
}

}  // namespace
}  // namespace podtap
