// HttpServer's idle and request timeouts on a real loop over loopback (HttpServerOptions):
// a connection that sends nothing, keep-alive after its answers, HTTP/2 without streams, partial
// HTTP/1.1 requests and incomplete HTTP/2 streams, and timeouts off. Every test ends with
// uv_loop_close() == 0.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tests/transport/server/http_server_fixture.h"

namespace fanout::transport {
namespace {

using testing_fixture::HttpServerTest;
using testing_fixture::RawClient;

// --- Idle and request timeouts
// --------------------------------------------------------------------

// The frame types (and stream ids) in a run of HTTP/2 frames, in order.
std::vector<std::pair<int, std::uint32_t>> h2_frames(const std::string& bytes) {
  std::vector<std::pair<int, std::uint32_t>> out;
  std::size_t pos = 0;
  while (pos + 9 <= bytes.size()) {
    const auto b = [&](std::size_t i) { return static_cast<std::uint8_t>(bytes[pos + i]); };
    const std::size_t len = (std::size_t{b(0)} << 16) | (std::size_t{b(1)} << 8) | b(2);
    const std::uint32_t id = ((std::uint32_t{b(5)} & 0x7f) << 24) | (std::uint32_t{b(6)} << 16) |
                             (std::uint32_t{b(7)} << 8) | b(8);
    out.emplace_back(b(3), id);
    pos += 9 + len;
  }
  return out;
}

bool has_frame(const std::string& bytes, int type, std::uint32_t stream_id) {
  const auto frames = h2_frames(bytes);
  return std::find(frames.begin(), frames.end(), std::make_pair(type, stream_id)) != frames.end();
}

const std::string kH2Preface = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                               std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // SETTINGS

// A one-shot wait on the loop, for "the would-be timeout elapsed" only.
// A loop timer that fires once after `ms`. The destructor closes the handle and runs the loop
// until libuv is done with it: the handle lives inside this object, so it must not be freed
// while libuv's closing list still points at it.
class Pause {
 public:
  Pause(uv_loop_t* loop, std::uint64_t ms) : loop_(loop) {
    uv_timer_init(loop, &timer_);
    timer_.data = this;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<Pause*>(t->data)->fired_ = true; }, ms, 0);
  }
  ~Pause() {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
             [](uv_handle_t* h) { static_cast<Pause*>(h->data)->closed_ = true; });
    while (!closed_) uv_run(loop_, UV_RUN_NOWAIT);
  }
  Pause(const Pause&) = delete;
  Pause& operator=(const Pause&) = delete;
  [[nodiscard]] bool fired() const { return fired_; }

 private:
  uv_loop_t* loop_;
  uv_timer_t timer_{};
  bool fired_ = false;
  bool closed_ = false;
};

TEST_F(HttpServerTest, IdleTimeoutClosesAConnectionThatSendsNothing) {
  HttpServerOptions o;
  o.idle_timeout_ms = 50;
  start(std::move(o));
  RawClient raw;
  raw.start(&loop_, port_, "");
  run_until([&] { return raw.closed(); });
  EXPECT_TRUE(raw.saw_eof());
  EXPECT_TRUE(raw.received().empty());
  EXPECT_TRUE(seen_.empty());
  run_until([&] { return server_->connections() == 0; });
}

TEST_F(HttpServerTest, IdleTimeoutClosesKeepAliveConnectionAfterItsAnswers) {
  HttpServerOptions o;
  // Generous: the second request must arrive within it after the first answer, even on a
  // loaded machine; the test then waits for the close itself, not for a time.
  o.idle_timeout_ms = 1'000;
  start(std::move(o));
  RawClient raw;
  bool second_sent = false;
  // The second request leaves as soon as the first answer is complete: it moves the deadline.
  raw.on_data = [&](RawClient& c) {
    if (!second_sent && c.received().find("\r\n\r\n") != std::string::npos) {
      second_sent = true;
      c.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    }
  };
  raw.start(&loop_, port_, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until([&] { return raw.closed(); });
  EXPECT_TRUE(raw.saw_eof());
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[0].target, "/a");
  EXPECT_EQ(seen_[1].target, "/b");
  EXPECT_EQ(seen_[0].connection_id, seen_[1].connection_id);
  const std::string& got = raw.received();
  const std::size_t first = got.find("HTTP/1.1 200 OK");
  ASSERT_NE(first, std::string::npos) << got;
  EXPECT_NE(got.find("HTTP/1.1 200 OK", first + 1), std::string::npos) << got;
  EXPECT_EQ(got.find("connection: close"), std::string::npos) << got;
}

TEST_F(HttpServerTest, IdleTimeoutSendsGoawayOnHttp2ConnectionWithoutStreams) {
  HttpServerOptions o;
  // Generous: the preface (sent on connect) must be read before the connection counts as idle
  // long enough, or it would close undetected, without SETTINGS and GOAWAY.
  o.idle_timeout_ms = 1'000;
  start(std::move(o));
  RawClient raw;
  raw.start(&loop_, port_, kH2Preface);
  run_until([&] { return raw.closed(); });
  EXPECT_TRUE(raw.saw_eof());
  EXPECT_TRUE(has_frame(raw.received(), 0x4, 0)) << "SETTINGS";
  EXPECT_TRUE(has_frame(raw.received(), 0x7, 0)) << "GOAWAY";
  EXPECT_TRUE(seen_.empty());
}

TEST_F(HttpServerTest, RequestTimeoutAnswers408ToPartialHttp1Requests) {
  HttpServerOptions o;
  o.request_timeout_ms = 50;
  start(std::move(o));
  RawClient headers;  // the header block never ends
  headers.start(&loop_, port_, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n");
  RawClient body;  // 3 bytes of 10
  body.start(&loop_, port_, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  RawClient preface;  // half an HTTP/2 preface: cut without an answer
  preface.start(&loop_, port_, "PRI * HTTP/2.0\r\n");
  run_until([&] { return headers.closed() && body.closed() && preface.closed(); });
  for (const RawClient* c : {&headers, &body}) {
    EXPECT_TRUE(c->saw_eof());
    EXPECT_EQ(c->received().rfind("HTTP/1.1 408 Request Timeout\r\n", 0), 0u) << c->received();
    EXPECT_NE(c->received().find("connection: close"), std::string::npos) << c->received();
  }
  EXPECT_TRUE(preface.saw_eof());
  EXPECT_TRUE(preface.received().empty());
  EXPECT_TRUE(seen_.empty());
}

TEST_F(HttpServerTest, RequestTimeoutAnswers408AndResetsAnIncompleteHttp2Stream) {
  HttpServerOptions o;
  o.request_timeout_ms = 50;
  start(std::move(o));
  // HEADERS on stream 1 (GET, http, /, :authority x), END_HEADERS without END_STREAM: the
  // request never ends.
  const std::string block("\x82\x86\x84\x41\x01x", 6);
  const std::string headers = std::string("\x00\x00\x06\x01\x04\x00\x00\x00\x01", 9) + block;
  RawClient raw;
  raw.on_data = [](RawClient& c) {
    if (has_frame(c.received(), 0x3, 1)) c.close();  // RST_STREAM on stream 1
  };
  raw.start(&loop_, port_, kH2Preface + headers);
  run_until([&] { return raw.closed(); });
  const auto frames = h2_frames(raw.received());
  const auto h = std::find(frames.begin(), frames.end(), std::make_pair(0x1, 1u));
  const auto rst = std::find(frames.begin(), frames.end(), std::make_pair(0x3, 1u));
  ASSERT_NE(h, frames.end()) << "HEADERS (408) on stream 1";
  ASSERT_NE(rst, frames.end()) << "RST_STREAM on stream 1";
  EXPECT_LT(h, rst);
  EXPECT_FALSE(has_frame(raw.received(), 0x7, 0)) << "the connection stays up";
  EXPECT_TRUE(seen_.empty());
}

TEST_F(HttpServerTest, ZeroTimeoutsKeepIdleAndSlowConnectionsOpen) {
  HttpServerOptions o;
  o.idle_timeout_ms = 0;
  o.request_timeout_ms = 0;
  start(std::move(o));
  RawClient idle;
  idle.start(&loop_, port_, "");
  RawClient slow;
  slow.start(&loop_, port_, "GET /slow HTTP/1.1\r\n");
  RawClient h2;
  h2.start(&loop_, port_, kH2Preface);
  run_until([&] { return server_->connections() == 3; });
  {
    // Four times the 50 ms the other tests configure: long enough for any timer to have fired.
    const Pause pause(&loop_, 200);
    run_until([&] { return pause.fired(); });
  }
  EXPECT_FALSE(idle.closed());
  EXPECT_FALSE(slow.closed());
  EXPECT_FALSE(h2.closed());
  idle.send("GET /idle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  slow.send("Host: x\r\nConnection: close\r\n\r\n");
  run_until([&] { return idle.closed() && slow.closed(); });
  EXPECT_EQ(idle.received().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << idle.received();
  EXPECT_EQ(slow.received().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << slow.received();
  EXPECT_FALSE(has_frame(h2.received(), 0x7, 0)) << "no GOAWAY";
  EXPECT_FALSE(h2.closed());
  h2.close();
  run_until([&] { return h2.closed(); });
  ASSERT_EQ(seen_.size(), 2u);
}

}  // namespace
}  // namespace fanout::transport
