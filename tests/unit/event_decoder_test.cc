// Decoding of kernel TCP records, above all the SYN/FIN arithmetic.
#include "agent/kernel/event_decoder.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <tuple>
#include <vector>

extern "C" {
#include "bpf/podtap.h"
}

namespace podtap {
namespace {

podtap_tcp_event Base(uint32_t kind) {
  podtap_tcp_event e{};
  e.kind = kind;
  e.family = AF_INET;
  e.conn_id = 42;
  e.ts_ns = 5'000'000;
  e.open_ns = 1'000'000;
  e.direction = PODTAP_DIR_OUTBOUND;
  e.daddr[0] = 10;
  e.daddr[3] = 7;
  return e;
}

DecodedEvent Decode(const void* data, size_t size) {
  std::vector<uint8_t> arena;
  return DecodeEvent(data, size, &arena);
}

TEST(EventDecoder, OpenCarriesBaselinesAndAddresses) {
  auto e = Base(PODTAP_EV_TCP_OPEN);
  e.base_acked = 1;  // the SYN
  e.sport = 40000;
  e.dport = 80;
  auto d = Decode(&e, sizeof(e));
  auto* o = std::get_if<TcpOpen>(&d);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->conn_id, 42u);
  EXPECT_EQ(o->base_acked, 1u);
  EXPECT_EQ(o->direction, Direction::kOutbound);
  EXPECT_EQ(o->remote.ToString(), "10.0.0.7");
  EXPECT_EQ(o->remote_port, 80);
}

TEST(EventDecoder, CleanCloseTakesBothFinsOut) {
  auto e = Base(PODTAP_EV_TCP_CLOSE);
  e.old_state = 9;  // LAST_ACK: the peer closed first, we answered
  e.base_acked = 1;
  e.bytes_acked = 1 + 1000 + 1;  // SYN + payload + FIN
  e.bytes_received = 300 + 1;    // payload + the peer's FIN
  e.flags = PODTAP_F_FIN_RECEIVED | PODTAP_F_FIN_ACKED;
  auto d = Decode(&e, sizeof(e));
  auto* c = std::get_if<TcpClose>(&d);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->acked_total - c->base_acked, 1000u);
  EXPECT_EQ(c->received_total - c->base_received, 300u);
  EXPECT_FALSE(c->failed);
  EXPECT_TRUE(c->kernel_saw_open);
}

TEST(EventDecoder, ResetReceivedIsAFailure) {
  auto e = Base(PODTAP_EV_TCP_CLOSE);
  e.old_state = 1;  // ESTABLISHED
  e.sk_err = ECONNRESET;
  auto d = Decode(&e, sizeof(e));
  auto* c = std::get_if<TcpClose>(&d);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->failed);
  EXPECT_EQ(c->error, TcpError::kReset);
}

TEST(EventDecoder, AbortWithoutErrorMeansWeSentTheReset) {
  auto e = Base(PODTAP_EV_TCP_CLOSE);
  e.old_state = 8;  // CLOSE_WAIT straight to CLOSE: SO_LINGER 0 or unread data
  auto d = Decode(&e, sizeof(e));
  auto* c = std::get_if<TcpClose>(&d);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->failed);
  EXPECT_EQ(c->error, TcpError::kReset);
}

TEST(EventDecoder, RetransmitTimeoutIsOther) {
  auto e = Base(PODTAP_EV_TCP_CLOSE);
  e.old_state = 4;  // FIN_WAIT1
  e.sk_err = ETIMEDOUT;
  auto d = Decode(&e, sizeof(e));
  auto* c = std::get_if<TcpClose>(&d);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->failed);
  EXPECT_EQ(c->error, TcpError::kOther);
}

TEST(EventDecoder, CloseCarriesTheErrnoItEndedWith) {
  // (old state, sk_err) -> errno of the close: the socket's error, ECONNRESET
  // when this side sent the reset, 0 for a clean close.
  for (auto [state, sk_err, want] :
       {std::tuple{1, ECONNRESET, ECONNRESET},                              // peer's RST
        std::tuple{8, EPIPE, EPIPE},                                        // RST in CLOSE_WAIT
        std::tuple{4, ETIMEDOUT, ETIMEDOUT}, std::tuple{1, 0, ECONNRESET},  // we aborted
        std::tuple{9, 0, 0}}) {                                             // LAST_ACK: clean
    auto e = Base(PODTAP_EV_TCP_CLOSE);
    e.old_state = static_cast<uint8_t>(state);
    e.sk_err = sk_err;
    e.dport = 8080;
    auto d = Decode(&e, sizeof(e));
    auto* c = std::get_if<TcpClose>(&d);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->err, want) << state << " " << sk_err;
    EXPECT_EQ(c->failed, want != 0);
    EXPECT_EQ(c->remote_port, 8080);
  }
}

TEST(EventDecoder, ErrnoNamesAreLinkerdsLabels) {
  EXPECT_STREQ(ErrnoName(0), "");
  EXPECT_STREQ(ErrnoName(ECONNRESET), "ECONNRESET");
  EXPECT_STREQ(ErrnoName(ETIMEDOUT), "ETIMEDOUT");
  EXPECT_STREQ(ErrnoName(ECONNREFUSED), "ECONNREFUSED");
  EXPECT_STREQ(ErrnoName(EPIPE), "EPIPE");
  EXPECT_STREQ(ErrnoName(EHOSTUNREACH), "EHOSTUNREACH");
  EXPECT_STREQ(ErrnoName(EAGAIN), "EAGAIN");
  EXPECT_STREQ(ErrnoName(EOPNOTSUPP), "EOPNOTSUPP");
  EXPECT_STREQ(ErrnoName(ENOTRECOVERABLE), "ENOTRECOVERABLE");  // 131, Linkerd's last
  // Past Linkerd's table, gaps in it, and what no kernel sends: one bounded value.
  for (int err : {41, 58, 132, 133, 4095, -1}) EXPECT_STREQ(ErrnoName(err), "UNKNOWN_ERRNO") << err;
}

TEST(EventDecoder, UntrackedCloseHasNoBaseline) {
  auto e = Base(PODTAP_EV_TCP_CLOSE);
  e.old_state = 9;
  e.flags = PODTAP_F_UNTRACKED;
  e.base_acked = 77;  // garbage the decoder must not trust
  auto d = Decode(&e, sizeof(e));
  auto* c = std::get_if<TcpClose>(&d);
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->kernel_saw_open);
  EXPECT_EQ(c->base_acked, 0u);
}

TEST(EventDecoder, ConnectFailures) {
  for (auto [err, want] : {std::pair{ECONNREFUSED, TcpError::kConnectionRefused},
                           std::pair{ETIMEDOUT, TcpError::kConnectTimeout},
                           std::pair{EHOSTUNREACH, TcpError::kOther}}) {
    auto e = Base(PODTAP_EV_TCP_CONNECT_FAIL);
    e.sk_err = err;
    auto d = Decode(&e, sizeof(e));
    auto* f = std::get_if<TcpConnectFail>(&d);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->error, want) << err;
    EXPECT_EQ(f->err, err);
  }
}

TEST(EventDecoder, V4MappedV6IsV4) {
  auto e = Base(PODTAP_EV_TCP_OPEN);
  e.family = AF_INET6;
  uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
  std::memcpy(e.daddr, mapped, 16);
  auto d = Decode(&e, sizeof(e));
  EXPECT_EQ(std::get<TcpOpen>(d).remote.ToString(), "192.0.2.1");
  uint8_t v6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  std::memcpy(e.daddr, v6, 16);
  d = Decode(&e, sizeof(e));
  EXPECT_EQ(std::get<TcpOpen>(d).remote.ToString(), "fd00::2");
}

TEST(EventDecoder, RejectsShortAndUnknownRecords) {
  auto e = Base(PODTAP_EV_TCP_OPEN);
  EXPECT_TRUE(std::holds_alternative<DecodeError>(Decode(&e, sizeof(e) - 1)));
  e.kind = 99;
  EXPECT_TRUE(std::holds_alternative<DecodeError>(Decode(&e, sizeof(e))));
  e.kind = PODTAP_EV_TCP_OPEN;
  e.family = 1;
  EXPECT_TRUE(std::holds_alternative<DecodeError>(Decode(&e, sizeof(e))));
}

TEST(EventDecoder, PayloadPrefixGoesToTheArena) {
  podtap_payload_event e{};
  e.kind = PODTAP_EV_PAYLOAD;
  e.dir = PODTAP_DATA_RECV;
  e.conn_id = 7;
  e.total_len = 100000;
  e.captured = 3;
  std::memcpy(e.data, "GET", 3);
  std::vector<uint8_t> arena = {1, 2};
  size_t size = offsetof(podtap_payload_event, data) + 3;
  auto d = DecodeEvent(&e, size, &arena);
  auto* p = std::get_if<PayloadEvent>(&d);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->dir, DataDir::kRecv);
  EXPECT_EQ(p->total_len, 100000u);
  EXPECT_EQ(p->offset, 2u);
  EXPECT_EQ(p->captured, 3u);
  EXPECT_EQ(std::string(arena.begin() + 2, arena.end()), "GET");
}

TEST(EventDecoder, PayloadRecordsThatContradictThemselvesAreRejected) {
  podtap_payload_event e{};
  e.kind = PODTAP_EV_PAYLOAD;
  e.dir = PODTAP_DATA_SEND;
  e.total_len = 2;
  e.captured = 3;  // more captured than moved
  std::vector<uint8_t> arena;
  size_t size = offsetof(podtap_payload_event, data) + 3;
  EXPECT_TRUE(std::holds_alternative<DecodeError>(DecodeEvent(&e, size, &arena)));
  e.total_len = 10;
  e.captured = 5;  // claims more than the record holds
  EXPECT_TRUE(std::holds_alternative<DecodeError>(DecodeEvent(&e, size, &arena)));
  e.captured = 3;
  e.dir = 9;
  EXPECT_TRUE(std::holds_alternative<DecodeError>(DecodeEvent(&e, size, &arena)));
  EXPECT_TRUE(arena.empty());
}

TEST(EventDecoder, SegmentRecordsAreCheckedAndMarked) {
  podtap_payload_event e{};
  e.kind = PODTAP_EV_PAYLOAD;
  e.dir = PODTAP_DATA_SEND;
  e.flags = PODTAP_PF_SEGMENTS;
  e.total_len = 20000;
  // One segment: a 9-byte frame header at offset 16393 (more captured than a short syscall moves
  // is fine for segments: their headers take room too).
  podtap_segment seg{16393, 9, 0};
  std::memcpy(e.data, &seg, sizeof(seg));
  std::memcpy(e.data + sizeof(seg), "\0\0\5\0\1\0\0\0\1", 9);
  e.captured = sizeof(seg) + 9;
  std::vector<uint8_t> arena;
  const size_t size = offsetof(podtap_payload_event, data) + e.captured;
  auto d = DecodeEvent(&e, size, &arena);
  auto* p = std::get_if<PayloadEvent>(&d);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->segmented);
  EXPECT_EQ(p->captured, 17u);
  // A segment reaching past the syscall's bytes.
  e.total_len = 16400;
  EXPECT_TRUE(std::holds_alternative<DecodeError>(DecodeEvent(&e, size, &arena)));
}

}  // namespace
}  // namespace podtap
