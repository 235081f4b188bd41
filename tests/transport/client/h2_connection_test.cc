// HTTP/2 connection-level behaviour of the client (transport/client/h2_session.cc through
// transport/client/client.h): a body stalled on flow control, the peer closing the socket
// mid-flight, large response bodies, one stream's response timeout, cancelling a stream. The
// peer is the scripted nghttp2 server session of h2_peer.h.
#include <gtest/gtest.h>

#include "tests/transport/client/h2_peer.h"

namespace fanout::transport::h2_test {
namespace {

// --- Flow control --------------------------------------------------------------------------------

TEST_F(H2SessionTest, BodyStalledOnAClosedWindowResumesOnWindowUpdateIntact) {
  constexpr std::size_t kWindow = 1024;
  const std::string big = patterned(100 * 1024);
  std::size_t stalls = 0;
  std::size_t overruns = 0;
  H2Peer::Script s;
  s.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kWindow)}};
  s.manual_window = true;
  s.on_data = [&](PeerConn& c, Exchange& ex, std::size_t) {
    if (!c.hold_window || ex.unconsumed < kWindow) return;
    // The window is closed. Let a few loop turns pass: nothing more may arrive on the
    // connection (a byte beyond the window would also be a FLOW_CONTROL_ERROR), then reopen.
    // This chunk's DATA frame is counted in frames_received() right after this hook.
    ++stalls;
    const std::size_t frames = c.frames_received() + 1;
    const std::size_t bytes = ex.body.size();
    after_turns(3, [&c, &ex, &overruns, frames, bytes] {
      if (c.frames_received() != frames || ex.body.size() != bytes) ++overruns;
      c.consume(ex);
    });
  };
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    c.answer(ex, 200, ex.body == big ? "same" : "differs");
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  // Warm-up: the client learns the 1 KiB window before the big body starts.
  auto warm = make_requests(1, "{}", "warm");
  run_all(warm);
  expect_ok(*warm[0]);

  peer.conn(0).hold_window = true;
  auto reqs = make_requests(1, big);
  run_all(reqs);
  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got_body, "same") << "the server compared the body byte for byte";
  ASSERT_EQ(peer.exchanges().size(), 2u);
  EXPECT_EQ(peer.exchanges()[1].body.size(), big.size());
  EXPECT_EQ(stalls, big.size() / kWindow) << "one stall per window";
  EXPECT_EQ(overruns, 0u) << "the client sent while the window was closed";
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

// --- The peer closing the socket ----------------------------------------------------------------

TEST_F(H2SessionTest, PeerClosingAfterRequestHeadersLosesTheSentRequests) {
  H2Peer::Script s;
  s.on_headers = [](PeerConn& c, Exchange&) { c.close_socket(); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(3);
  run_all(reqs);

  for (auto& r : reqs) {
    EXPECT_EQ(r->calls, 1);
    EXPECT_EQ(r->got.failure, Failure::kConnectionLost) << to_string(r->got.failure);
    EXPECT_TRUE(is_retryable(r->got.failure));
    EXPECT_EQ(r->got.requeues, 0u) << "sent requests may have been processed: not re-sent";
  }
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(peer.arrivals(), 0u);
}

TEST_F(H2SessionTest, PeerClosingMidFlightSendsTheQueuedRequestOnANewConnection) {
  H2Peer::Script s;
  s.on_headers = [](PeerConn& c, Exchange&) {
    if (c.index() == 0) c.close_socket();
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  o.max_streams_per_connection = 1;  // the second request waits in the pool
  o.max_connections_per_origin = 1;
  make_client(o);
  auto reqs = make_requests(2);
  run_all(reqs);

  EXPECT_EQ(reqs[0]->calls, 1);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kConnectionLost) << to_string(reqs[0]->got.failure);
  expect_ok(*reqs[1]);
  EXPECT_TRUE(reqs[1]->got.new_connection);
  EXPECT_EQ(client_->stats().connections_opened, 2u);
  ASSERT_EQ(peer.connections(), 2u);
  ASSERT_EQ(peer.conn(0).exchanges().size(), 1u) << "the second request never went out there";
  EXPECT_EQ(peer.conn(0).exchanges()[0]->path, "/r0");
  ASSERT_EQ(peer.conn(1).exchanges().size(), 1u);
  EXPECT_EQ(peer.conn(1).exchanges()[0]->path, "/r1");
}

// --- Response bodies -----------------------------------------------------------------------------

TEST_F(H2SessionTest, ResponseBodyKeepsExactlyTheFirst64KiB) {
  const std::vector<std::string> bodies = {patterned(100 * 1024), patterned(2 * 1024 * 1024),
                                           patterned(Request::kMaxBodyExcerpt), patterned(10)};
  H2Peer::Script s;
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    const std::size_t i = static_cast<std::size_t>(std::stoul(ex.path.substr(2)));
    c.answer(ex, 200, bodies.at(i));
  };
  start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(bodies.size());
  run_all(reqs);

  for (std::size_t i = 0; i < reqs.size(); ++i) {
    expect_ok(*reqs[i]);
    EXPECT_EQ(reqs[i]->got_body.size(), std::min(bodies[i].size(), Request::kMaxBodyExcerpt));
    EXPECT_TRUE(reqs[i]->got_body == bodies[i].substr(0, Request::kMaxBodyExcerpt))
        << reqs[i]->target_storage;
  }
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

// --- Response timeout ----------------------------------------------------------------------------

TEST_F(H2SessionTest, UnansweredStreamTimesOutAloneAndTheConnectionStaysUsable) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    if (ex.path != "/r1") c.answer(ex, 200);  // /r1 is never answered
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  // Generous: /r0 and /r2 are answered at once by the peer on this loop and must not time out
  // even on a loaded machine; the event the test waits for is every request's completion.
  o.response_timeout_ms = 1'000;
  make_client(o);
  auto reqs = make_requests(3);
  run_all(reqs);

  expect_ok(*reqs[0]);
  expect_ok(*reqs[2]);
  EXPECT_EQ(reqs[1]->calls, 1);
  EXPECT_EQ(reqs[1]->got.failure, Failure::kResponseTimeout) << to_string(reqs[1]->got.failure);
  EXPECT_TRUE(is_retryable(reqs[1]->got.failure));

  auto later = make_requests(1, "{}", "later");
  run_all(later);
  expect_ok(*later[0]);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(peer.connections(), 1u);
  // The timed-out stream was reset (CANCEL) before the later request's HEADERS.
  const auto r1 = peer.with_path("/r1");
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_TRUE(r1[0]->reset_by_client);
  EXPECT_EQ(r1[0]->client_reset_code, static_cast<std::uint32_t>(NGHTTP2_CANCEL));
  EXPECT_FALSE(r1[0]->open);
}

// --- Cancel --------------------------------------------------------------------------------------

// Cancelling a request in flight resets its stream and completes it from the loop, never inside
// cancel() (ClientH2Session::cancel must not call on_response synchronously).
TEST_F(H2SessionTest, CancellingAnInFlightStreamResetsItAndCompletesFromTheLoop) {
  H2Peer::Script s;
  s.on_request = [this](PeerConn& c, Exchange& ex) {
    if (ex.path == "/r0") {
      uv_stop(&loop_);  // held: the test cancels it
    } else {
      c.answer(ex, 200);
    }
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  remaining_ = 1;
  client_->submit(*reqs[0]);
  run_loop();
  ASSERT_EQ(peer.arrivals(), 1u);

  client_->cancel(*reqs[0]);
  ASSERT_FALSE(reqs[0]->done) << "on_response ran from inside cancel()";
  run_loop();
  EXPECT_EQ(reqs[0]->calls, 1);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kCancelled);

  auto later = make_requests(1, "{}", "later");
  run_all(later);
  expect_ok(*later[0]);
  const auto r0 = peer.with_path("/r0");
  ASSERT_EQ(r0.size(), 1u);
  EXPECT_TRUE(r0[0]->reset_by_client);
  EXPECT_EQ(r0[0]->client_reset_code, static_cast<std::uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

}  // namespace
}  // namespace fanout::transport::h2_test
