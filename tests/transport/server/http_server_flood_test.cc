// HTTP/2 floods against the real HttpServer on a real loop over loopback (port 0): a scripted
// client opens and resets thousands of streams (rapid reset, CVE-2023-44487), floods SETTINGS and
// PING frames without reading the acknowledgements, sends a header block that never ends
// (CONTINUATION flood, CVE-2024-28182), too many SETTINGS entries, and header lists over the
// limit. Each time the server ends that connection (GOAWAY with an error code, or a closed
// socket) within a bounded number of frames, and a well-behaved client on a new connection is
// still answered.
//
// The client (h2_flood_client.h) writes frames itself: 9-byte frame headers, header blocks from
// nghttp2's HPACK deflater (one per connection, so the server's inflater stays in step), the
// server's header blocks read with nghttp2's inflater. Floods go out one write at a time, each
// after the previous one completed, until the server reacts or a bound is reached: no sleeps, no
// timing thresholds.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/transport/server/h2_flood_client.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"

namespace fanout::transport {
namespace {

using flood::Fields;
using flood::FloodClient;
using flood::frame;
using flood::get;
using flood::Hpack;
using flood::kPreface;
using flood::ping_frame;
using flood::request;
using flood::rst_frame;
using flood::settings_frame;

class HttpServerFloodTest : public ::testing::Test, public HttpRequestHandler {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    loop_ready_ = true;
    streams_ = std::make_unique<StreamLoop>(&loop_);
  }

  void TearDown() override {
    if (!loop_ready_) return;
    for (auto& c : clients_) c->close();
    run_until([&] {
      return std::all_of(clients_.begin(), clients_.end(), [](auto& c) { return c->closed(); });
    });
    clients_.clear();
    if (server_) {
      bool closed = false;
      server_->close([](HttpServer*, void* d) noexcept { *static_cast<bool*>(d) = true; }, &closed);
      run_until([&] { return closed; });
      server_.reset();
    }
    streams_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
    streams_.reset();
  }

  // "/hold" is never answered (a slow backend, what a rapid reset aims at); anything else: 200.
  void on_request(const HttpRequest& r, HttpResponder responder) override {
    targets_.emplace_back(r.target);
    if (r.target == "/hold") return;
    EXPECT_TRUE(responder.respond(200, {}, "ok\n"));
  }

  void start(HttpServerOptions options = {}) {
    auto s = HttpServer::create(*streams_, std::move(options), this);
    ASSERT_TRUE(s.has_value()) << s.error();
    server_ = std::move(*s);
    ASSERT_NE(server_->port(), 0);
  }

  // Runs the loop until `done` holds (checked after every loop iteration).
  void run_until(const std::function<bool()>& done) {
    while (!done()) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) {
        ADD_FAILURE() << "the loop ran out of work before the condition held";
        return;
      }
    }
  }

  // A new client; the fixture owns it, and closes it at the end if a failed assertion left it open.
  FloodClient* connect(bool read = true) {
    clients_.push_back(std::make_unique<FloodClient>(&loop_, server_->port(), read));
    return clients_.back().get();
  }

  // Sends batch(i) for i = 0, 1, ... one write at a time, each after the previous completed,
  // until the server ended the connection, `max_batches` went out, or `stop` (when given) holds.
  // Returns the batches sent.
  std::size_t flood(FloodClient& c, std::size_t max_batches,
                    const std::function<std::string(std::size_t)>& batch,
                    const std::function<bool()>& stop = {}) {
    std::size_t sent = 0;
    const auto stopped = [&] { return stop && stop(); };
    while (sent < max_batches && !c.ended() && !stopped()) {
      c.send(batch(sent));
      ++sent;
      run_until([&] { return c.in_flight() == 0 || c.ended() || stopped(); });
    }
    return sent;
  }

  // Closes the flooding client and waits until the server let go of every connection.
  void finish(FloodClient& c) {
    c.close();
    run_until([&] { return c.closed() && server_->connections() == 0; });
  }

  // A well-behaved client on a new connection: GET /ok is answered 200.
  void expect_still_serving() {
    const std::size_t before = targets_.size();
    Hpack hpack;
    FloodClient* c = connect();
    c->send(std::string(kPreface) + settings_frame(0) + request(hpack, 1, get("/ok")));
    run_until([&] { return c->stream_ended(1) || c->ended(); });
    EXPECT_EQ(c->status(1), 200);
    EXPECT_FALSE(c->goaway());
    ASSERT_EQ(targets_.size(), before + 1);
    EXPECT_EQ(targets_.back(), "/ok");
    finish(*c);
  }

  // Sends a PING after what was sent and runs until the server ended the connection or answered
  // the PING: frames are processed in order, so an answer means everything before was accepted.
  void wait_for_verdict(FloodClient& c) {
    const std::size_t acks = c.ping_acks();
    c.send(ping_frame(0x5eed));
    run_until([&] { return c.ended() || c.ping_acks() > acks; });
  }

  // A SETTINGS frame of `limit` entries is acknowledged; one of limit + 1 gets
  // GOAWAY(ENHANCE_YOUR_CALM).
  void expect_settings_entries_limit(std::size_t limit) {
    FloodClient* c = connect();
    c->send(std::string(kPreface) + settings_frame(limit));
    run_until([&] { return c->settings_acks() == 1 || c->ended(); });
    EXPECT_EQ(c->settings_acks(), 1u);
    EXPECT_FALSE(c->goaway());
    c->send(settings_frame(limit + 1));
    wait_for_verdict(*c);
    EXPECT_TRUE(c->goaway());
    EXPECT_EQ(c->goaway_code(), NGHTTP2_ENHANCE_YOUR_CALM);
    EXPECT_EQ(c->settings_acks(), 1u);
    finish(*c);
  }

  // HEADERS then `n` CONTINUATION frames, the last with END_HEADERS, on `stream_id`.
  static std::string split_request(Hpack& hpack, std::uint32_t stream_id, int n,
                                   const std::string& path) {
    std::string out =
        frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, stream_id, hpack.block(get(path)));
    for (int i = 1; i <= n; ++i) {
      out += frame(NGHTTP2_CONTINUATION, i == n ? NGHTTP2_FLAG_END_HEADERS : NGHTTP2_FLAG_NONE,
                   stream_id, hpack.block({{"x-part-" + std::to_string(i), "v"}}));
    }
    return out;
  }

  uv_loop_t loop_{};
  bool loop_ready_ = false;
  std::unique_ptr<StreamLoop> streams_;
  std::unique_ptr<HttpServer> server_;
  std::vector<std::string> targets_;  // every request the handler saw
  std::vector<std::unique_ptr<FloodClient>> clients_;
};

// (a) Rapid reset: HEADERS (a whole request) then RST_STREAM(CANCEL), again and again. Every
// stream is closed at once, so SETTINGS_MAX_CONCURRENT_STREAMS never stops it; the RST_STREAM
// token bucket does: after h2_reset_burst resets (1000 by default) nghttp2 answers
// GOAWAY(INTERNAL_ERROR) and opens no stream after its last-stream-id.
constexpr std::size_t kPairsPerWrite = 20;

std::function<std::string(std::size_t)> rapid_reset(Hpack& hpack) {
  return [&hpack](std::size_t batch) {
    std::string out = batch == 0 ? std::string(kPreface) + settings_frame(0) : std::string();
    for (std::size_t i = 0; i < kPairsPerWrite; ++i) {
      const auto id = static_cast<std::uint32_t>(2 * (batch * kPairsPerWrite + i) + 1);
      out += request(hpack, id, get("/hold"));
      out += rst_frame(id, NGHTTP2_CANCEL);
    }
    return out;
  };
}

TEST_F(HttpServerFloodTest, RapidResetEndsTheConnectionAfterTheDefaultBurst) {
  start();
  Hpack hpack;
  FloodClient* c = connect();
  const std::size_t bound = 20'000 / kPairsPerWrite;  // 20 times the default burst
  const std::size_t batches = flood(*c, bound, rapid_reset(hpack));
  ASSERT_TRUE(c->goaway()) << batches * kPairsPerWrite << " streams reset, no GOAWAY";
  EXPECT_LT(batches, bound);
  EXPECT_NE(c->goaway_code(), NGHTTP2_NO_ERROR);
  // The burst itself is allowed: the first 1000 resets were ordinary.
  EXPECT_GT(c->goaway_last_stream(), 2u * 1000);
  const std::size_t streams_sent = batches * kPairsPerWrite;
  EXPECT_GE(targets_.size(), std::size_t{1000});
  EXPECT_LE(targets_.size(), streams_sent);
  finish(*c);
  expect_still_serving();
}

TEST_F(HttpServerFloodTest, RapidResetHonoursTheConfiguredBucket) {
  HttpServerOptions o;
  o.h2_reset_burst = 50;
  o.h2_reset_rate = 1;
  start(std::move(o));
  Hpack hpack;
  FloodClient* c = connect();
  const std::size_t bound = 20'000 / kPairsPerWrite;
  const std::size_t batches = flood(*c, bound, rapid_reset(hpack));
  ASSERT_TRUE(c->goaway()) << batches * kPairsPerWrite << " streams reset, no GOAWAY";
  EXPECT_NE(c->goaway_code(), NGHTTP2_NO_ERROR);
  EXPECT_GT(c->goaway_last_stream(), 2u * 50);
  // Far below the default burst of 1000 (one more token a second would take 15 minutes).
  EXPECT_LT(c->goaway_last_stream(), 2u * 1000);
  EXPECT_GE(targets_.size(), std::size_t{50});
  EXPECT_LT(targets_.size(), std::size_t{1000});
  finish(*c);
  expect_still_serving();
}

// (b) SETTINGS flood from a client that never reads: each SETTINGS needs an ACK. The server
// writes ACKs until the kernel's buffers are full and max_unsent_output_bytes (1 MiB) of its
// output waits, then stops reading that connection (read_pauses()): no further ACK is made, and
// its memory stays bounded by the 1 MiB plus one read's ACKs, whatever the client sends. The
// flood stops there; the client's close then frees the connection. (What ends such a
// connection on the server's side, write_timeout_ms, is http_server_limits_test's; it is off
// here, so that only the pause can stop the flood, however slow the build.)
// (c) The same with PING frames.
// h2_max_queued_acks is raised to 8000 here, above the 7281 SETTINGS (3855 PING) frames one
// 64 KiB read can carry, so that the ACK limit (PingBurstInOneReadIsClosedAtOnce) cannot end
// the connection first. The bound, 8 Mi frames (72 to 136 MiB), is far beyond a few MiB.
constexpr std::size_t kFramesPerWrite = 1000;
constexpr std::uint32_t kQueuedAcks = 8000;
constexpr std::size_t kAckFloodBound = (8u << 20) / kFramesPerWrite;

TEST_F(HttpServerFloodTest, SettingsFloodFromAClientThatDoesNotReadStopsBeingRead) {
  HttpServerOptions o;
  o.h2_max_queued_acks = kQueuedAcks;
  o.write_timeout_ms = 0;
  start(std::move(o));
  FloodClient* c = connect(/*read=*/false);
  const std::string settings = settings_frame(0);
  const std::size_t batches = flood(
      *c, kAckFloodBound,
      [&](std::size_t batch) {
        std::string out = batch == 0 ? std::string(kPreface) : std::string();
        for (std::size_t i = 0; i < kFramesPerWrite; ++i) out += settings;
        return out;
      },
      [&] { return server_->read_pauses() != 0; });
  EXPECT_EQ(server_->read_pauses(), 1u) << batches * kFramesPerWrite << " SETTINGS frames written";
  EXPECT_FALSE(c->ended()) << "held, not read: nothing but the pause acted";
  EXPECT_LT(batches, kAckFloodBound);
  // Reached through the backed-up output: at least 1 MiB of 9-byte ACKs were made first.
  EXPECT_GT(batches * kFramesPerWrite, std::size_t{(1u << 20) / 9});
  finish(*c);
  EXPECT_TRUE(targets_.empty());
  expect_still_serving();
}

TEST_F(HttpServerFloodTest, PingFloodFromAClientThatDoesNotReadStopsBeingRead) {
  HttpServerOptions o;
  o.h2_max_queued_acks = kQueuedAcks;
  o.write_timeout_ms = 0;
  start(std::move(o));
  FloodClient* c = connect(/*read=*/false);
  const std::size_t batches = flood(
      *c, kAckFloodBound,
      [&](std::size_t batch) {
        std::string out = batch == 0 ? std::string(kPreface) + settings_frame(0) : std::string();
        for (std::size_t i = 0; i < kFramesPerWrite; ++i) {
          out += ping_frame(batch * kFramesPerWrite + i);
        }
        return out;
      },
      [&] { return server_->read_pauses() != 0; });
  EXPECT_EQ(server_->read_pauses(), 1u) << batches * kFramesPerWrite << " PING frames written";
  EXPECT_FALSE(c->ended()) << "held, not read: nothing but the pause acted";
  EXPECT_LT(batches, kAckFloodBound);
  EXPECT_GT(batches * kFramesPerWrite, std::size_t{(1u << 20) / 17});  // 17-byte ACKs
  finish(*c);
  EXPECT_TRUE(targets_.empty());
  expect_still_serving();
}

// The default h2_max_queued_acks (1000) against a client that reads: 1000 PINGs in one write are
// answered; 3000 in one write (one 51 KiB read, or two reads of which one holds over 1000)
// queue more ACKs than allowed inside a single nghttp2_session_mem_recv: closed at once, no ACK.
TEST_F(HttpServerFloodTest, PingBurstInOneReadIsClosedAtOnce) {
  start();
  FloodClient* c = connect();
  c->send(std::string(kPreface) + settings_frame(0));
  run_until([&] { return c->settings_acks() == 1 || c->ended(); });
  std::string pings;
  for (std::uint64_t i = 0; i < 1000; ++i) pings += ping_frame(i);
  c->send(pings);
  run_until([&] { return c->ping_acks() == 1000 || c->ended(); });
  EXPECT_EQ(c->ping_acks(), 1000u);
  ASSERT_FALSE(c->ended());
  pings.clear();
  for (std::uint64_t i = 0; i < 3000; ++i) pings += ping_frame(i);
  c->send(pings);
  wait_for_verdict(*c);
  EXPECT_TRUE(c->eof() || c->write_failed());
  EXPECT_FALSE(c->goaway());
  EXPECT_EQ(c->ping_acks(), 1000u);
  finish(*c);
  expect_still_serving();
}

// (b') One SETTINGS frame with more than h2_max_settings_entries entries (32 by default):
// GOAWAY(ENHANCE_YOUR_CALM). As many as the limit are accepted.
TEST_F(HttpServerFloodTest, TooManySettingsEntriesGetGoawayEnhanceYourCalm) {
  start();
  expect_settings_entries_limit(32);
  expect_still_serving();
}

TEST_F(HttpServerFloodTest, SettingsEntriesLimitIsConfigurable) {
  HttpServerOptions o;
  o.h2_max_settings_entries = 4;
  start(std::move(o));
  expect_settings_entries_limit(4);
  expect_still_serving();
}

// (d) CONTINUATION flood: a HEADERS frame without END_HEADERS, then CONTINUATION frames without
// end. h2_max_continuations (8) are allowed, as an ordinary large header block needs; the 9th gets
// GOAWAY(ENHANCE_YOUR_CALM), and the request never reaches the handler.
TEST_F(HttpServerFloodTest, ContinuationFloodGetsGoawayAfterTheLimit) {
  start();
  Hpack hpack;
  FloodClient* c = connect();
  // Stream 1: exactly 8 CONTINUATION frames, the last with END_HEADERS: answered.
  c->send(std::string(kPreface) + settings_frame(0) + split_request(hpack, 1, 8, "/ok"));
  run_until([&] { return c->stream_ended(1) || c->ended(); });
  EXPECT_EQ(c->status(1), 200);
  ASSERT_FALSE(c->goaway());
  // Stream 3: CONTINUATION frames until the server reacts, 4096 at most.
  const std::size_t bound = 4096;
  const std::size_t sent = flood(*c, bound, [&](std::size_t i) {
    std::string f =
        i == 0 ? frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 3, hpack.block(get("/flood")))
               : std::string();
    return f + frame(NGHTTP2_CONTINUATION, NGHTTP2_FLAG_NONE, 3,
                     hpack.block({{"x-flood", "continuation"}}));
  });
  ASSERT_TRUE(c->goaway()) << sent << " CONTINUATION frames, no GOAWAY";
  EXPECT_LT(sent, bound);
  EXPECT_GE(sent, 9u);
  EXPECT_EQ(c->goaway_code(), NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_LE(c->goaway_last_stream(), 3u);
  finish(*c);
  ASSERT_EQ(targets_.size(), 1u);  // /ok only
  expect_still_serving();
}

TEST_F(HttpServerFloodTest, ContinuationLimitIsConfigurable) {
  HttpServerOptions o;
  o.h2_max_continuations = 2;
  start(std::move(o));
  Hpack hpack;
  FloodClient* c = connect();
  c->send(std::string(kPreface) + settings_frame(0) + split_request(hpack, 1, 2, "/ok"));
  run_until([&] { return c->stream_ended(1) || c->ended(); });
  EXPECT_EQ(c->status(1), 200);
  ASSERT_FALSE(c->goaway());
  c->send(split_request(hpack, 3, 3, "/three"));
  wait_for_verdict(*c);
  EXPECT_TRUE(c->goaway());
  EXPECT_EQ(c->goaway_code(), NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_EQ(c->status(3), 0);
  finish(*c);
  ASSERT_EQ(targets_.size(), 1u);
  expect_still_serving();
}

// (e) Header lists over the limit. SETTINGS_MAX_HEADER_LIST_SIZE advertises max_header_bytes; a
// request over it is answered 431 and the connection carries on; one that decodes to more than
// 4 times the limit (here an HPACK bomb: one 3000-byte field indexed once, then referenced by a
// single byte) gets GOAWAY(ENHANCE_YOUR_CALM) in that one frame.
TEST_F(HttpServerFloodTest, HeaderListsOverTheLimitGet431ThenGoaway) {
  HttpServerOptions o;
  o.max_header_bytes = 4096;
  start(std::move(o));
  Hpack hpack;
  FloodClient* c = connect();
  Fields big = get("/big");
  big.emplace_back("x-big", std::string(6000, 'a'));
  c->send(std::string(kPreface) + settings_frame(0) + request(hpack, 1, big));
  run_until([&] { return c->stream_ended(1) || c->ended(); });
  EXPECT_EQ(c->server_setting(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 4096u);
  EXPECT_EQ(c->status(1), 431);
  ASSERT_FALSE(c->goaway());

  Fields bomb = get("/bomb");
  for (int i = 0; i < 20; ++i) bomb.emplace_back("x-bomb", std::string(3000, 'b'));
  const std::string headers = request(hpack, 3, bomb);
  EXPECT_LT(headers.size(), std::size_t{3200}) << "the deflater did not index the field";
  c->send(headers);
  wait_for_verdict(*c);
  ASSERT_TRUE(c->goaway());
  EXPECT_EQ(c->goaway_code(), NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_LE(c->goaway_last_stream(), 3u);
  EXPECT_EQ(c->status(3), 0);
  finish(*c);
  EXPECT_TRUE(targets_.empty());
  expect_still_serving();
}

}  // namespace
}  // namespace fanout::transport
