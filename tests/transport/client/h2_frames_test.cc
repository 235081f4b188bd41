// HTTP/2 frame-level behaviour of the client (transport/client/h2_session.cc through
// transport/client/client.h), what the peer's control frames do: GOAWAY, RST_STREAM,
// SETTINGS lowering concurrency, a shutdown notice, informational and early responses. The
// peer is the scripted nghttp2 server session of h2_peer.h.
#include <gtest/gtest.h>

#include "tests/transport/client/h2_peer.h"

namespace fanout::transport::h2_test {
namespace {

// --- GOAWAY --------------------------------------------------------------------------------------

TEST_F(H2SessionTest, GoawayResendsTheStreamsAboveLastStreamIdOnANewConnection) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    if (c.index() > 0) {
      c.answer(ex, 200);
      return;
    }
    if (c.requests() < 20) return;  // hold until all 20 are here
    // Streams 1, 3, ..., 15: the first 8 are processed, the other 12 never will be.
    c.goaway(15);
    for (Exchange* e : c.held()) {
      if (e->stream_id <= 15) c.answer(*e, 200);
    }
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(20);
  run_all(reqs);

  for (std::size_t i = 0; i < reqs.size(); ++i) {
    expect_ok(*reqs[i]);
    EXPECT_EQ(reqs[i]->got.requeues, i < 8 ? 0u : 1u) << reqs[i]->target_storage;
  }
  const ClientStats st = client_->stats();
  EXPECT_EQ(st.requeued, 12u);
  EXPECT_EQ(st.connections_opened, 2u);
  ASSERT_EQ(peer.connections(), 2u);
  EXPECT_EQ(peer.conn(0).requests(), 20u);
  EXPECT_EQ(peer.conn(1).requests(), 12u);
  // Each request was answered once, on the connection that processed it.
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    std::size_t answered = 0;
    for (const Exchange* e : peer.with_path(reqs[i]->target_storage)) {
      answered += e->answered ? 1u : 0u;
      if (e->answered) {
        EXPECT_EQ(e->conn, i < 8 ? 0u : 1u) << reqs[i]->target_storage;
      }
    }
    EXPECT_EQ(answered, 1u) << reqs[i]->target_storage;
  }
  // The first connection drained: the client closed it once its 8 streams were answered.
  EXPECT_TRUE(peer.conn(0).closed());
}

// --- RST_STREAM ----------------------------------------------------------------------------------

TEST_F(H2SessionTest, ResetBeforeResponseHeadersIsARetryableStreamReset) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.reset(ex, NGHTTP2_INTERNAL_ERROR); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  const RecordingRequest& r = *reqs[0];
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.got.failure, Failure::kStreamReset) << to_string(r.got.failure);
  EXPECT_EQ(r.got.status, 0);
  EXPECT_TRUE(is_retryable(r.got.failure));
  EXPECT_EQ(r.got.requeues, 0u);
  EXPECT_EQ(client_->stats().requeued, 0u);
  EXPECT_EQ(peer.arrivals(), 1u) << "a reset stream is not re-sent by the client";
}

TEST_F(H2SessionTest, RefusedStreamIsResentAndSucceeds) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    if (ex.arrival == 0) {
      c.reset(ex, NGHTTP2_REFUSED_STREAM);
    } else {
      c.answer(ex, 200);
    }
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got.requeues, 1u);
  EXPECT_EQ(client_->stats().requeued, 1u);
  EXPECT_EQ(client_->stats().connections_opened, 1u) << "re-sent on the same connection";
  ASSERT_EQ(peer.exchanges().size(), 2u);
  EXPECT_EQ(peer.exchanges()[1].path, "/r0");
  EXPECT_NE(peer.exchanges()[1].stream_id, peer.exchanges()[0].stream_id);
}

TEST_F(H2SessionTest, ResetAfterResponseHeadersStillReportsTheStatus) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.send_headers(ex, 200, NGHTTP2_INTERNAL_ERROR); };
  start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got.requeues, 0u);
}

TEST_F(H2SessionTest, StreamRefusedOnEveryAttemptEndsRefusedBeforeProcessing) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.reset(ex, NGHTTP2_REFUSED_STREAM); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  const RecordingRequest& r = *reqs[0];
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.got.failure, Failure::kRefusedBeforeProcessing) << to_string(r.got.failure);
  EXPECT_TRUE(is_retryable(r.got.failure));
  EXPECT_EQ(peer.arrivals(), 1u + Request::kMaxRequeues) << "sent once, then re-sent 3 times";
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

// Response::requeues counts re-sends only; the final refusal, not re-sent, is not counted.
TEST_F(H2SessionTest, StreamRefusedOnEveryAttemptCountsOnlyTheResends) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.reset(ex, NGHTTP2_REFUSED_STREAM); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  ASSERT_EQ(peer.arrivals(), 1u + Request::kMaxRequeues);
  EXPECT_EQ(reqs[0]->got.requeues, Request::kMaxRequeues);
  EXPECT_EQ(client_->stats().requeued, Request::kMaxRequeues);
}

// --- SETTINGS_MAX_CONCURRENT_STREAMS ------------------------------------------------------------

TEST_F(H2SessionTest, LoweredStreamLimitIsRespectedOnceAcknowledged) {
  constexpr std::size_t kBatch = 30;
  bool lowered = false;
  std::size_t lowered_at_acks = 0;  // settings_acks() when SETTINGS(2) was sent
  std::size_t open_at_ack = 0;
  std::size_t max_open_after_ack = 0;
  std::size_t arrived_before_ack = 0;
  H2Peer::Script s;
  s.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10}};
  s.on_settings_ack = [&](PeerConn& c) {
    if (lowered && c.settings_acks() == lowered_at_acks + 1) {
      open_at_ack = c.open_streams();
    }
  };
  s.on_headers = [&](PeerConn& c, Exchange&) {
    if (!lowered) return;
    if (c.settings_acks() <= lowered_at_acks) {
      ++arrived_before_ack;
    } else {
      max_open_after_ack = std::max(max_open_after_ack, c.open_streams());
    }
  };
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    if (ex.arrival == 0) {  // warm-up: the client learns the limit of 10
      c.answer(ex, 200);
      return;
    }
    const std::vector<Exchange*> held = c.held();
    const bool last = ex.arrival == kBatch;
    if (!lowered) {
      if (held.size() < 10 && !last) return;
      lowered = true;
      lowered_at_acks = c.settings_acks();
      c.settings({{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
    } else if (held.size() < 2 && !last) {
      return;  // hold: the client must fill both slots, and no more
    }
    for (Exchange* e : held) c.answer(*e, 200);
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  o.max_connections_per_origin = 1;
  make_client(o);
  auto warm = make_requests(1, "{}", "warm");
  run_all(warm);
  expect_ok(*warm[0]);

  auto reqs = make_requests(kBatch);
  run_all(reqs);
  for (auto& r : reqs) {
    expect_ok(*r);
    EXPECT_EQ(r->got.requeues, 0u) << r->target_storage;
  }
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(client_->stats().requeued, 0u);
  ASSERT_EQ(peer.connections(), 1u);
  EXPECT_EQ(peer.conn(0).max_open_streams(), 10u) << "the first 10 filled the initial limit";
  EXPECT_TRUE(lowered);
  EXPECT_EQ(arrived_before_ack, 0u) << "the ACK precedes any new stream";
  EXPECT_EQ(open_at_ack, 0u);
  EXPECT_EQ(max_open_after_ack, 2u) << "never more than the lowered limit, and up to it";
  EXPECT_EQ(peer.auto_refused(), 0u);
}

TEST_F(H2SessionTest, StreamsBeyondTheLimitInTheFirstFlightAreRefusedAndResent) {
  // The client sends its first requests before it has the server's SETTINGS (nghttp2 then
  // assumes 100 streams): the server refuses the streams beyond its 10 with REFUSED_STREAM.
  constexpr std::size_t kBatch = 30;
  std::size_t answered = 0;
  H2Peer::Script s;
  s.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10}};
  s.on_request = [&](PeerConn& c, Exchange&) {
    // Hold until 10 streams are open at once, so exactly the streams beyond them are refused.
    const std::vector<Exchange*> held = c.held();
    if (held.size() < 10 && answered + held.size() < kBatch) return;
    for (Exchange* e : held) c.answer(*e, 200);
    answered += held.size();
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  o.max_connections_per_origin = 1;
  make_client(o);
  auto reqs = make_requests(kBatch);
  run_all(reqs);

  for (std::size_t i = 0; i < reqs.size(); ++i) {
    expect_ok(*reqs[i]);
    EXPECT_EQ(reqs[i]->got.requeues, i < 10 ? 0u : 1u) << reqs[i]->target_storage;
  }
  EXPECT_EQ(peer.auto_refused(), 20u);
  EXPECT_EQ(client_->stats().requeued, 20u);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(peer.conn(0).max_open_streams(), 10u);
  EXPECT_EQ(peer.arrivals(), kBatch) << "each request processed once";
}

TEST_F(H2SessionTest, ShutdownNoticeDrainsTheConnectionWithoutRefusingItsStreams) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange&) {
    if (c.index() == 0 && c.requests() < 5) return;
    if (c.index() == 0) c.shutdown_notice();
    for (Exchange* e : c.held()) c.answer(*e, 200);
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(5);
  run_all(reqs);
  for (auto& r : reqs) {
    expect_ok(*r);
    EXPECT_EQ(r->got.requeues, 0u);
  }
  auto later = make_requests(5, "{}", "later");
  run_all(later);
  for (auto& r : later) expect_ok(*r);
  EXPECT_EQ(client_->stats().requeued, 0u);
  EXPECT_EQ(client_->stats().connections_opened, 2u) << "no new stream after the notice";
  ASSERT_EQ(peer.connections(), 2u);
  EXPECT_EQ(peer.conn(0).requests(), 5u);
  EXPECT_TRUE(peer.conn(0).closed()) << "the client closed the drained connection";
}

// --- Response headers ----------------------------------------------------------------------------

TEST_F(H2SessionTest, InformationalResponseIsNotTheFinalStatus) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    c.send_headers(ex, 103);
    c.answer(ex, 201, "final");
  };
  start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);
  EXPECT_EQ(reqs[0]->calls, 1);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kNone) << reqs[0]->got_detail;
  EXPECT_EQ(reqs[0]->got.status, 201);
  EXPECT_EQ(reqs[0]->got_body, "final");
}

// nghttp2's HTTP messaging checks are off in the client; it checks :status itself. Each
// malformed answer fails its attempt (retryable) and leaves the connection to the others; a field
// the client does not read is not checked (a 2xx with an odd value is still the receiver's 2xx),
// and a status in trailers does not undo the answer before them.
TEST_F(H2SessionTest, MalformedStatusesFailTheirAttemptAndKeepTheConnection) {
  using Fields = std::vector<std::pair<std::string, std::string>>;
  struct Answer {
    Fields fields;
    bool end_stream = true;
    Fields trailers = {};  // a second HEADERS frame, ending the stream
  };
  const std::vector<Answer> answers = {
      {{{":status", "2000"}}},
      {{{":status", "20"}}},
      {{{":status", "2x0"}}},
      {{{":status", "099"}}},
      {{{":status", "600"}}},
      {{{":status", ""}}},
      {{{":status", "200"}, {":status", "500"}}},  // a second status in the block
      {{{":status", "100"}, {":status", "200"}}},  // the same, informational first
      {{{":status", "2000"}}, false},              // malformed, the stream left open
      {{{"server", "no-status"}}},                 // none at all
      {{{":status", "103"}}},                      // an informational one ends the stream
      {{{":status", "204"}, {"x-odd", std::string("a\x01b", 3)}}},
      {{{":status", "200"}}, false, {{":status", "500"}}},  // a status in trailers
  };
  constexpr std::size_t kMalformed = 9, kNoStatus = 11;
  H2Peer::Script s;
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    const Answer& a = answers.at(std::stoul(ex.path.substr(2)));
    c.send_fields(ex, a.fields, a.end_stream && a.trailers.empty());
    if (!a.trailers.empty()) c.send_fields(ex, a.trailers);
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(answers.size());
  run_all(reqs);
  for (std::size_t i = 0; i < answers.size(); ++i) {
    SCOPED_TRACE("answer " + std::to_string(i));
    EXPECT_EQ(reqs[i]->calls, 1);
    if (i < kMalformed) {
      EXPECT_EQ(reqs[i]->got.status, 0);
      EXPECT_EQ(reqs[i]->got.failure, Failure::kProtocolError);
      EXPECT_EQ(reqs[i]->got_detail, "a malformed :status");
    } else if (i < kNoStatus) {
      EXPECT_EQ(reqs[i]->got.status, 0);
      EXPECT_EQ(reqs[i]->got.failure, Failure::kProtocolError);
      EXPECT_EQ(reqs[i]->got_detail, "stream closed without a response");
    }
  }
  EXPECT_EQ(reqs[11]->got.failure, Failure::kNone) << reqs[11]->got_detail;
  EXPECT_EQ(reqs[11]->got.status, 204);
  EXPECT_EQ(reqs[12]->got.failure, Failure::kNone) << reqs[12]->got_detail;
  EXPECT_EQ(reqs[12]->got.status, 200) << "the trailers' status does not undo the answer";
  EXPECT_EQ(peer.connections(), 1u) << "a malformed answer resets its stream, not the connection";
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

TEST_F(H2SessionTest, EarlyResponseWithNoErrorResetEndsTheUploadAndKeepsTheConnection) {
  // RFC 9113 §8.1: a server may answer before the whole request arrived and stop the upload
  // with RST_STREAM(NO_ERROR). A 1 MiB body cannot all be sent within the initial windows.
  H2Peer::Script s;
  s.on_headers = [](PeerConn& c, Exchange& ex) {
    if (ex.path != "/r0") return;
    ex.reset_after_response = true;
    ex.reset_code = NGHTTP2_NO_ERROR;
    c.answer(ex, 200, "early");
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1, patterned(1024 * 1024));
  run_all(reqs);
  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got_body, "early");
  ASSERT_EQ(peer.exchanges().size(), 1u);
  EXPECT_FALSE(peer.exchanges()[0].complete) << "the upload was cut short";

  auto later = make_requests(1, patterned(200 * 1024), "later");
  run_all(later);
  expect_ok(*later[0]);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  ASSERT_EQ(peer.exchanges().size(), 2u);
  EXPECT_EQ(peer.exchanges()[1].body.size(), 200u * 1024) << "connection window accounting";
}

}  // namespace
}  // namespace fanout::transport::h2_test
