// Turns the captured prefixes of one TCP connection's reads and writes into HTTP/1.x requests and
// responses, following message framing by byte counts even where the bytes were never captured.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace podtap {

// The request stream is what the client sends, the response stream what the server sends.
enum class HttpStream : uint8_t { kRequest, kResponse };

struct Http1Request {
  std::string method;
  std::string authority;  // the Host header as sent, else the absolute-form target's authority
  std::string path;       // without query string or fragment
  uint64_t headers_end_ns = 0;  // ts of the Feed that completed (or cut off) the request headers
};

struct Http1Response {
  Http1Request request;  // empty when the connection closed on a request never answered
  int status = 0;        // 0 when cut off before the status line
  // ts of the Feed carrying the response's first body byte (Linkerd's first DATA frame); 0 when
  // it has no body, whose end then counts. Headers past the captured prefix hide where the body
  // starts: then the Feed of the status line.
  uint64_t first_byte_ns = 0;
  uint64_t end_ns = 0;   // ts of the Feed carrying the last byte, or of the close
  bool cut_off = false;  // the connection closed before the response ended
};

enum class Http1Error : uint8_t {
  kNotHttp,                 // the connection never looked like HTTP/1.x
  kMalformed,               // a message that began like HTTP/1.x broke its grammar
  kHeadersTooLarge,         // header or trailer block past Limits::max_header_bytes
  kBadLength,               // untrustworthy Content-Length, chunk size or Transfer-Encoding
  kLostSync,                // framing no longer known; later messages are found by their start
  kTooManyPipelined,        // more than Limits::max_pipelined requests unanswered
  kResponseWithoutRequest,  // a response with no request to pair it with; dropped
  kCount
};

// snake_case, for a metric label.
const char* Http1ErrorName(Http1Error e);

class Http1Sink {
 public:
  virtual ~Http1Sink() = default;
  virtual void OnRequest(const Http1Request& r) = 0;
  virtual void OnResponse(const Http1Response& r) = 0;
  virtual void OnError(Http1Error e) = 0;
  // The parser gave up (or the protocol switched) while `n` requests reported through OnRequest
  // had no response reported yet: they never will be.
  virtual void OnUnanswered(size_t n) = 0;
};

struct Http1Head;                      // a parsed header block, private to http1_parser.cc
enum class Http1HeadResult : uint8_t;  // how parsing one went, private to http1_parser.cc

// Outside the parser class so that it can be a defaulted constructor argument.
struct Http1Limits {
  size_t max_header_bytes = 16384;           // per header (or trailer) block, buffered across Feeds
  uint64_t max_content_length = 1ull << 40;  // also the largest chunk size
  size_t max_pipelined = 64;                 // requests waiting for their response
  size_t max_chunk_line = 64;                // chunk-size line, CRLF excluded
  // Feeds a stream may carry without a message start while nothing is known about it (attached
  // mid-connection, or garbage where a message should have begun).
  size_t max_feeds_without_start = 256;
};

// One per connection; not thread-safe. Every transition to kGaveUp except a protocol switch
// (101, CONNECT) is reported through OnError first, then the requests it leaves without a
// response through OnUnanswered.
//
// Prefix rule. Bytes past a Feed's captured prefix are skipped by count, so Content-Length and
// chunk data need never be seen. When the prefix ends inside a header block, the message is
// reported at once from the complete lines captured (a request line cut inside its target still
// gives method and path); then the end of the headers is unknown and the stream resynchronises:
// - with a Content-Length seen (and no Transfer-Encoding), the message is at least that plus
//   the 2-byte blank line long from the cut: Feeds within that count are its body whatever they
//   look like, and a response ends with the Feed that reaches the count;
// - requests are otherwise assumed to have no body (kLostSync if chunked);
// - responses without a body (HEAD, 204, 304) end with this Feed; otherwise (chunked, or no
//   framing header seen) kLostSync, and the response ends with the last Feed before the next
//   response start, before the next request's headers (a client that does not pipeline has read
//   the whole response by then) or at close.
// A chunk-size line past the prefix is kLostSync, handled alike, except when exactly the 5 bytes
// of "0\r\n\r\n" are left in the Feed; trailers past the prefix end the message with the Feed.
//
// Resync rule. A stream that resynchronises only looks at Feed starts: a Feed whose captured
// bytes begin a message (request: method token, SP, then '/', '*', "http(s)://" or, for CONNECT,
// an authority; response: "HTTP/1.") starts one; any other Feed belongs to the message before
// it. A message start that falls past the prefix is kLostSync. With nothing to attribute bytes
// to (attached mid-connection, garbage where a message should begin), at most
// max_feeds_without_start Feeds are waited for (then kNotHttp, or kLostSync once HTTP was seen).
//
// Timing: 1xx interim responses are skipped; first_byte_ns is the final response's first body
// byte, as Linkerd measures latency (to the first DATA frame, or the end without one).
class Http1Parser {
 public:
  using Limits = Http1Limits;
  // kAtOpen: the first bytes of each stream are the first of the connection, so anything that is
  // not HTTP/1.x is rejected on sight. kMidConnection: they may be in the middle of a body.
  enum class Attach : uint8_t { kAtOpen, kMidConnection };
  enum class State : uint8_t { kUnknown, kHttp, kGaveUp };

  explicit Http1Parser(Http1Sink* sink, Limits limits = {}, Attach attach = Attach::kAtOpen);
  // The response stream points into the parser.
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  // captured is the first bytes of a read or write of total_len bytes.
  void Feed(HttpStream stream, std::span<const uint8_t> captured, uint64_t total_len,
            uint64_t ts_ns);
  // Responses ended by the close end here; requests still unanswered become cut_off responses.
  // Later Feeds are ignored.
  void OnClose(uint64_t ts_ns);
  // kGaveUp: stop feeding this connection (not HTTP/1.x, protocol switched, limit hit).
  State state() const { return state_; }
  // Between messages: HTTP/1.x seen, not closed, both streams at a message start, nothing
  // buffered and nothing owed to the sink (no request waiting, no response being read). All
  // that a parser at rest knows is that sentence: Reset(sink, true) makes another parser the
  // same, so a connection between messages need not keep one (Http1ParserPool).
  bool AtRest() const;
  // Makes this parser a new one (Attach::kAtOpen, its limits kept) feeding `sink`; with
  // `http_seen`, one at rest. Keeps the request queue's capacity (mostly one request).
  void Reset(Http1Sink* sink, bool http_seen);
  // Gives up at the agent's request (its CPU budget: OverloadGuard): requests reported and not
  // answered go to the sink's OnUnanswered, as on any other give-up; later Feeds are ignored.
  void Abandon() { Stop(); }

 private:
  enum class Phase : uint8_t {
    kStart,       // a message begins at the next byte
    kHeaders,     // inside a start line and header block
    kBody,        // skipping `remaining` bytes of Content-Length body
    kChunkLine,   // reading a chunk-size line into `buf`
    kChunkData,   // skipping `remaining` bytes of chunk data
    kChunkEnd,    // skipping the CRLF after chunk data
    kTrailers,    // reading trailer lines until the blank one
    kUntilClose,  // response body ended by the close
    kTunnel,      // request stream after CONNECT, until its response
    kResync,      // position unknown; non-start Feeds belong to the message before
    kSeek,        // position unknown, no message before; bounded by max_feeds_without_start
  };

  // The response being read, and one whose end is being estimated.
  struct Slots {
    std::optional<Http1Response> current;
    bool current_orphan = false;
    std::optional<Http1Response> pending;
    bool pending_end_known = false;  // it ends when `skip` runs out
  };

  struct Stream {
    Phase phase = Phase::kStart;
    // The message began at a Feed start while resynchronising: a start line that turns out
    // invalid sends the stream back to `resume` instead of being an error.
    bool tentative = false;
    Phase resume = Phase::kSeek;
    uint64_t msg_start_ns = 0;
    std::string buf;  // header block split across Feeds; chunk-size and trailer lines
    size_t scan = 0, line_start = 0;  // where the header block scan resumes
    bool start_line_done = false;
    uint64_t remaining = 0;
    uint8_t crlf_left = 0;
    size_t trailer_bytes = 0;
    size_t seek_feeds = 0;
    // The response stream's responses (response_slots_); null on the request stream, which
    // has none, so that only one stream of each connection pays for them.
    Slots* slots = nullptr;
    // kResync: bytes that surely still belong to the message before (a lower bound from a
    // Content-Length seen before a cut), during which no Feed is taken for a message start.
    uint64_t skip = 0;
  };

  Stream& stream(HttpStream s) { return s == HttpStream::kRequest ? request_ : response_; }
  bool BeginAtFeedStart(Stream& s, HttpStream which, std::span<const uint8_t> cap, uint64_t total,
                        uint64_t ts);
  uint64_t StartMessage(Stream& s, HttpStream which, std::span<const uint8_t> cap, uint64_t pos,
                        uint64_t total, uint64_t ts);
  uint64_t ConsumeHead(Stream& s, HttpStream which, std::span<const uint8_t> cap, uint64_t pos,
                       uint64_t total, uint64_t ts);
  bool CheckStartLine(Stream& s, HttpStream which, std::string_view block);
  void CompleteHead(Stream& s, HttpStream which, Http1HeadResult result, const Http1Head& h,
                    bool cut, uint64_t unseen, uint64_t ts);
  void RequestHead(Stream& s, const Http1Head& h, bool cut, uint64_t unseen, uint64_t ts);
  void ResponseHead(Stream& s, const Http1Head& h, bool cut, uint64_t unseen, uint64_t ts);
  uint64_t ConsumeChunkLine(Stream& s, std::span<const uint8_t> cap, uint64_t pos, uint64_t total,
                            uint64_t ts);
  uint64_t ConsumeTrailers(Stream& s, std::span<const uint8_t> cap, uint64_t pos, uint64_t total,
                           uint64_t ts);
  void BeginHead(Stream& s, uint64_t ts);
  // The current response's first body byte is in the Feed at `ts` (the first such Feed counts).
  void MarkBody(Stream& s, uint64_t ts);
  void EndMessage(Stream& s, uint64_t ts, bool estimated);
  void LoseFraming(Stream& s, uint64_t ts);
  void EnterSeek(Stream& s);
  void RejectStart(Stream& s);
  void CountSeekFeed(Stream& s);
  void StartPending(Stream& s, uint64_t ts, bool end_known, uint64_t skip);
  void AttributeToPending(Stream& s, uint64_t total, uint64_t ts);
  void FinishPending(Stream& s);
  void Fail(Http1Error e);
  void Stop();
  void Clear();

  Http1Sink* sink_;
  Limits limits_;
  State state_ = State::kUnknown;
  bool closed_ = false;
  Stream request_, response_;
  Slots response_slots_;
  // Requests waiting for their response, oldest first. A vector, not a deque: a deque allocates
  // half a kilobyte as it is made, for each connection, where the queue mostly holds one request.
  std::vector<Http1Request> queue_;
};

}  // namespace podtap
