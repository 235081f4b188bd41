// transport/stream.{h,cc}: a Stream over loopback on a real libuv loop, a listener of the test's
// own on 127.0.0.1 port 0 accepting the other end as a Stream too. Writes buffered until the
// loop turn (the StreamLoop's flush list) or flush(), a write larger than the socket takes
// finishing through uv_write and draining once, close() dropping unsent output and unlinking a
// dirty stream, the peer's end of stream, a refused connect, pausing reads, and TLS over a
// Stream (handshake, ALPN, data; an unknown CA refused). Waits are on events, bounded by a 30 s
// guard that fails the test, never on time.
#include "transport/stream.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/peers.h"
#include "tests/transport/test_peers.h"
#include "transport/tls.h"

namespace fanout::transport {
namespace {

// What a handler saw, in order, plus hooks a test scripts the stream with.
class Recorder final : public StreamHandler {
 public:
  std::function<void(Stream&)> on_open;
  std::function<void(Stream&)> on_data;

  void on_stream_open(Stream& s) override {
    stream = &s;
    events.emplace_back("open");
    if (on_open) on_open(s);
  }
  void on_stream_data(Stream& s, const std::uint8_t* data, std::size_t len) override {
    received.append(reinterpret_cast<const char*>(data), len);
    if (on_data) on_data(s);
  }
  void on_stream_drained(Stream& /*s*/) override { ++drained; }
  void on_stream_error(Stream& /*s*/, StreamError error, std::string_view detail) override {
    errors.push_back(error);
    events.emplace_back(std::string("error: ") + std::string(to_string(error)));
    error_detail = std::string(detail);
  }
  void on_stream_closed(Stream& /*s*/) override {
    events.emplace_back("closed");
    stream = nullptr;
    ++closed;
  }

  Stream* stream = nullptr;  // set from open until closed
  std::vector<std::string> events;
  std::vector<StreamError> errors;
  std::string error_detail;
  std::string received;
  int drained = 0;
  int closed = 0;
};

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    streams_ = std::make_unique<StreamLoop>(&loop_);
    uv_timer_init(&loop_, &guard_);
    guard_.data = this;
    uv_tcp_init(&loop_, &listener_);
    listener_.data = this;
    sockaddr_in a{};
    uv_ip4_addr("127.0.0.1", 0, &a);
    ASSERT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&a), 0), 0);
    ASSERT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 16, on_connection), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&a), &len);
    address_ = a;
  }

  void TearDown() override {
    // Either side may still be open, or handshaking (not opened yet): close() is idempotent,
    // and a stream is freed only after on_stream_closed.
    if (connected_ != nullptr && client.closed == 0) connected_->close();
    if (accepted_ != nullptr && server.closed == 0) accepted_->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    streams_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle leaked";
  }

  // Connects a client Stream to the listener (the server side is accepted with `server_tls_`).
  Stream* connect(std::shared_ptr<const TlsContext> tls = nullptr,
                  std::string_view host = "localhost") {
    auto s = Stream::connect(*streams_, reinterpret_cast<const sockaddr*>(&address_),
                             std::move(tls), host, &client);
    EXPECT_TRUE(s.has_value()) << s.error();
    connected_ = s ? *s : nullptr;
    return connected_;
  }

  // Runs the loop until `done()` holds; a 30 s guard fails the test instead of hanging it.
  void run_until(const std::function<bool()>& done) {
    uv_timer_start(
        &guard_,
        [](uv_timer_t* t) {
          ADD_FAILURE() << "still waiting after 30 s";
          static_cast<StreamTest*>(t->data)->gave_up_ = true;
        },
        30'000, 0);
    while (!done() && !gave_up_) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&guard_);
  }

  static void on_connection(uv_stream_t* listener, int status) {
    auto* self = static_cast<StreamTest*>(listener->data);
    ASSERT_EQ(status, 0);
    auto s = Stream::accept(*self->streams_, listener, self->server_tls_, &self->server);
    ASSERT_TRUE(s.has_value()) << s.error();
    self->accepted_ = *s;
  }

  uv_loop_t loop_{};
  std::unique_ptr<StreamLoop> streams_;
  uv_timer_t guard_{};
  uv_tcp_t listener_{};
  sockaddr_in address_{};
  bool gave_up_ = false;
  std::shared_ptr<const TlsContext> server_tls_;
  Stream* connected_ = nullptr;  // the client side, once connect() returned it
  Stream* accepted_ = nullptr;   // the server side, once accepted
  Recorder client;
  Recorder server;
};

TEST_F(StreamTest, WritesWaitForTheLoopTurnAndArriveInOrder) {
  std::size_t pending_after_writes = 0;
  client.on_open = [&](Stream& s) {
    s.write("one,", 4);
    s.write("two,", 4);
    s.write("three", 5);
    pending_after_writes = s.pending_output();
  };
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return server.received.size() == 13; });
  EXPECT_EQ(pending_after_writes, 13u) << "nothing is sent from inside write()";
  EXPECT_EQ(server.received, "one,two,three");
  ASSERT_NE(client.stream, nullptr);
  EXPECT_EQ(client.stream->pending_output(), 0u);
  EXPECT_EQ(client.drained, 1) << "one flush for the three writes";
  EXPECT_TRUE(client.stream->is_open());
  EXPECT_FALSE(client.stream->is_tls());
  EXPECT_EQ(client.stream->alpn(), "");
}

TEST_F(StreamTest, FlushSendsAtOnceAndReportsTheDrain) {
  int drained_in_flush = -1;
  client.on_open = [&](Stream& s) {
    s.write("now", 3);
    s.flush();
    drained_in_flush = client.drained;
    EXPECT_EQ(s.pending_output(), 0u);
  };
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return server.received == "now"; });
  EXPECT_EQ(drained_in_flush, 1) << "the kernel took three bytes inside flush()";
  EXPECT_EQ(client.drained, 1);
}

TEST_F(StreamTest, AWriteLargerThanTheSocketTakesFinishesIntactAndDrainsOnce) {
  // More than loopback's socket buffers hold (a send buffer of at most 4 MiB by default, the
  // peer not reading yet): uv_try_write takes a part, uv_write the rest.
  std::string big(8 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7) % 26);
  std::size_t pending_after_flush = 0;
  client.on_open = [&](Stream& s) {
    s.write(big.data(), big.size());
    s.flush();
    pending_after_flush = s.pending_output();
    s.write("tail", 4);  // waits behind the uv_write in flight
  };
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return server.received.size() == big.size() + 4; });
  EXPECT_GT(pending_after_flush, 0u) << "the socket took all 8 MiB at once";
  ASSERT_EQ(server.received.size(), big.size() + 4);
  EXPECT_TRUE(server.received.compare(0, big.size(), big) == 0) << "bytes lost or reordered";
  EXPECT_EQ(server.received.substr(big.size()), "tail");
  EXPECT_EQ(client.drained, 1) << "drained once everything was handed to the kernel";
  ASSERT_NE(client.stream, nullptr);
  EXPECT_EQ(client.stream->pending_output(), 0u);
}

TEST_F(StreamTest, CloseDropsUnsentOutputAndEndsWithOnClosedOnly) {
  client.on_open = [&](Stream& s) {
    s.write("never sent", 10);  // the stream is now in the loop's flush list...
    s.close();                  // ...and must leave it: it is freed before the next turn
    s.close();                  // idempotent
    s.write("ignored", 7);
  };
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return client.closed == 1 && server.closed == 1; });
  EXPECT_EQ(client.events, (std::vector<std::string>{"open", "closed"}))
      << "close() by the owner is not an error";
  EXPECT_EQ(server.received, "");
  EXPECT_EQ(server.errors, std::vector<StreamError>{StreamError::kEof});
  EXPECT_EQ(server.events.back(), "closed");
}

TEST_F(StreamTest, PeerClosingIsAnEofErrorThenClosed) {
  server.on_open = [](Stream& s) { s.close(); };
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return client.closed == 1; });
  EXPECT_EQ(client.events,
            (std::vector<std::string>{"open", "error: connection closed by peer", "closed"}));
  EXPECT_EQ(client.errors, std::vector<StreamError>{StreamError::kEof});
}

TEST_F(StreamTest, ConnectToAClosedPortIsRefusedWithoutOpening) {
  const fanout::testing::ClosedPort closed;
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", closed.port(), &a);
  auto s = Stream::connect(*streams_, reinterpret_cast<const sockaddr*>(&a), nullptr, "", &client);
  ASSERT_TRUE(s.has_value()) << s.error();
  connected_ = *s;
  run_until([&] { return client.closed == 1; });
  EXPECT_EQ(client.errors, std::vector<StreamError>{StreamError::kConnectRefused});
  EXPECT_EQ(client.events.size(), 2u) << "no open before the error";
}

TEST_F(StreamTest, PausedReadingHoldsInputUntilResumed) {
  client.on_open = [](Stream& s) {
    s.pause_reading();
    s.pause_reading();  // idempotent
  };
  server.on_open = [](Stream& s) {
    s.write("held", 4);
    s.flush();  // in the client's socket buffer once flush() returns (loopback)
  };
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return client.stream != nullptr && server.drained == 1; });
  ASSERT_NE(client.stream, nullptr);
  EXPECT_TRUE(client.stream->reading_paused());
  // The bytes wait in the kernel: turns of the loop that would read them do not.
  for (int i = 0; i < 3; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(client.received, "");
  client.stream->resume_reading();
  EXPECT_FALSE(client.stream->reading_paused());
  run_until([&] { return client.received == "held"; });
  EXPECT_EQ(client.received, "held");
}

TEST_F(StreamTest, AcceptedStreamKnowsItsPeerAndTakesNoConnectTime) {
  ASSERT_NE(connect(), nullptr);
  run_until([&] { return server.stream != nullptr && client.stream != nullptr; });
  ASSERT_NE(server.stream, nullptr);
  char ip[64];
  EXPECT_EQ(server.stream->peer_ip(ip, sizeof ip), "127.0.0.1");
  EXPECT_EQ(server.stream->peer_ip(ip, 0), "") << "no room: empty, not an overflow";
  EXPECT_EQ(server.stream->connect_us(), 0u);
  EXPECT_EQ(accepted_, server.stream);
}

TEST(StreamErrorTest, EveryErrorHasItsName) {
  EXPECT_EQ(to_string(StreamError::kConnectRefused), "connection refused");
  EXPECT_EQ(to_string(StreamError::kConnectFailed), "connect failed");
  EXPECT_EQ(to_string(StreamError::kTlsFailed), "TLS failure");
  EXPECT_EQ(to_string(StreamError::kReset), "connection reset");
  EXPECT_EQ(to_string(StreamError::kEof), "connection closed by peer");
}

// --- TLS over a Stream
// ----------------------------------------------------------------------------

class TlsStreamTest : public StreamTest {
 protected:
  // One test CA and certificates for the suite (the openssl tool, tests/transport/test_peers.h).
  static void SetUpTestSuite() {
    dir_ = new fanout::testing::ScratchDir;
    pki_ = fanout::testing::make_test_pki(*dir_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    StreamTest::SetUp();
    if (!pki_) FANOUT_MISSING_PEER("openssl");
    TlsServerOptions so;
    so.cert_file = dir_->file("server.pem");
    so.key_file = dir_->file("server.key");
    auto s = TlsContext::server(so);
    ASSERT_TRUE(s.has_value()) << s.error();
    server_tls_ = *s;
  }
  std::shared_ptr<const TlsContext> client_context(bool with_ca) {
    TlsClientOptions co;
    if (with_ca) co.ca_file = dir_->file("ca.pem");
    auto c = TlsContext::client(co);
    EXPECT_TRUE(c.has_value()) << c.error();
    return c ? *c : nullptr;
  }
  static fanout::testing::ScratchDir* dir_;
  static bool pki_;
};

fanout::testing::ScratchDir* TlsStreamTest::dir_ = nullptr;
bool TlsStreamTest::pki_ = false;

TEST_F(TlsStreamTest, HandshakeAgreesOnH2AndPlaintextCrossesBothWays) {
  client.on_open = [](Stream& s) { s.write("ping", 4); };
  server.on_data = [](Stream& s) { s.write("pong", 4); };
  ASSERT_NE(connect(client_context(true), "localhost"), nullptr);
  run_until([&] { return client.received == "pong"; });
  EXPECT_EQ(server.received, "ping");
  ASSERT_NE(client.stream, nullptr);
  ASSERT_NE(server.stream, nullptr);
  EXPECT_TRUE(client.stream->is_tls());
  EXPECT_EQ(client.stream->alpn(), "h2");
  EXPECT_EQ(server.stream->alpn(), "h2");
  EXPECT_TRUE(client.errors.empty()) << client.error_detail;
}

TEST_F(TlsStreamTest, AnUnknownCaFailsTheHandshakeBeforeOpen) {
  ASSERT_NE(connect(client_context(false), "localhost"), nullptr);
  run_until([&] { return client.closed == 1 && server.closed == 1; });
  EXPECT_EQ(client.errors, std::vector<StreamError>{StreamError::kTlsFailed});
  EXPECT_NE(client.error_detail.find("certificate verification failed"), std::string::npos)
      << client.error_detail;
  EXPECT_EQ(client.events.front(), "error: TLS failure") << "never opened";
  ASSERT_FALSE(server.events.empty());
  EXPECT_NE(server.events.front(), "open") << "the server never finished its handshake";
  EXPECT_EQ(server.errors.size(), 1u);
}

}  // namespace
}  // namespace fanout::transport
