#include "transport/client/client.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/client_fixture.h"
#include "tests/transport/test_peers.h"

namespace fanout::transport {
namespace {

using fanout::test_support::Requests;
using fanout::testing::Child;
using fanout::testing::ScratchDir;

// A TCP server inside the test's loop that accepts and reads, then either never answers (black
// hole) or closes each connection after its first read.
class SilentPeer {
 public:
  // `reply` (if any) is written after the first bytes of each request arrive.
  SilentPeer(uv_loop_t* loop, bool close_after_read, std::string reply = {})
      : close_after_read_(close_after_read), reply_(std::move(reply)) {
    port_ = fanout::test_support::listen_on_loopback(loop, &server_, this, on_connection);
  }
  void close() {
    for (uv_tcp_t* c : conns_) {
      if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(c))) {
        uv_close(reinterpret_cast<uv_handle_t*>(c),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
      }
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  static void on_connection(uv_stream_t* s, int) {
    auto* self = static_cast<SilentPeer*>(s->data);
    auto* c = new uv_tcp_t;
    uv_tcp_init(s->loop, c);
    c->data = self;
    uv_accept(s, reinterpret_cast<uv_stream_t*>(c));
    self->conns_.push_back(c);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(c),
        [](uv_handle_t*, std::size_t, uv_buf_t* b) {
          static char buf[65536];
          *b = uv_buf_init(buf, sizeof buf);
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t*) {
          auto* peer = static_cast<SilentPeer*>(st->data);
          if (n > 0 && !peer->reply_.empty()) {
            uv_buf_t b =
                uv_buf_init(peer->reply_.data(), static_cast<unsigned>(peer->reply_.size()));
            (void)uv_try_write(st, &b, 1);
          }
          if ((n > 0 && peer->close_after_read_) || n < 0) {
            uv_read_stop(st);
            if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(st))) {
              uv_close(reinterpret_cast<uv_handle_t*>(st), [](uv_handle_t* h) {
                auto* p = static_cast<SilentPeer*>(h->data);
                std::erase(p->conns_, reinterpret_cast<uv_tcp_t*>(h));
                delete reinterpret_cast<uv_tcp_t*>(h);
              });
            }
          }
        });
  }
  uv_tcp_t server_{};
  std::vector<uv_tcp_t*> conns_;
  std::uint16_t port_ = 0;
  bool close_after_read_;
  std::string reply_;
};

class ClientTest : public fanout::test_support::ClientLoopTest {
 protected:
  void close_peers() override {
    if (peer_) peer_->close();
  }
  void free_peers() override { peer_.reset(); }

  // A silent peer on this loop, closed and freed by TearDown after the loop has run.
  SilentPeer& silent_peer(bool close_after_read, std::string reply = {}) {
    peer_ = std::make_unique<SilentPeer>(&loop_, close_after_read, std::move(reply));
    return *peer_;
  }

  static ClientOptions local_options() { return loopback_options(); }

  // Makes `n` requests to tls/host/port with `body`.
  Requests make_requests(std::size_t n, bool tls, std::string_view host, std::uint16_t port,
                         const std::string& body = "{}") {
    Requests v;
    for (std::size_t i = 0; i < n; ++i) v.push_back(make_request(tls, host, port, "/hook", body));
    return v;
  }

  std::unique_ptr<SilentPeer> peer_;
};

// --- Peers nobody here wrote: nghttpd ----------------------------------------------------------

class NghttpdTest : public ClientTest {
 protected:
  void SetUp() override {
    ClientTest::SetUp();
    dir_.write("hook", "");
    ASSERT_TRUE(fanout::testing::make_test_pki(dir_)) << "openssl failed";
  }
  // Starts nghttpd on port 0 (the port it bound, read from /proc); extra flags go before the
  // port.
  std::uint16_t start_nghttpd(bool tls, std::vector<std::string> flags = {},
                              const std::string& cert = "server") {
    std::vector<std::string> argv = {"nghttpd", "--address=127.0.0.1", "--echo-upload", "-d",
                                     dir_.path()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (!tls) argv.push_back("--no-tls");
    argv.push_back("0");
    if (tls) {
      argv.push_back(dir_.file(cert + ".key"));
      argv.push_back(dir_.file(cert + ".pem"));
    }
    peer_ = Child(argv);
    const auto ports = fanout::testing::wait_listening(peer_.pid());
    EXPECT_EQ(ports.size(), 1u) << "nghttpd did not start";
    return ports.empty() ? 0 : ports[0];
  }
  ScratchDir dir_;
  Child peer_;
};

TEST_F(NghttpdTest, H2cPostsArriveAndBodiesComeBackIntact) {
  const std::uint16_t port = start_nghttpd(false);
  ClientOptions o = local_options();
  o.insecure = true;
  make_client(o);
  auto reqs = make_requests(300, false, "127.0.0.1", port);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    reqs[i]->body_storage =
        R"({"type":"business_updated","payload":{"n":)" + std::to_string(i) + "}}";
    reqs[i]->body = reqs[i]->body_storage;
  }
  run_all(reqs);
  for (auto& r : reqs) {
    ASSERT_EQ(r->got.failure, Failure::kNone) << to_string(r->got.failure) << ": " << r->got_detail;
    EXPECT_EQ(r->got.status, 200);
    EXPECT_EQ(r->got.protocol, Protocol::kHttp2);
    EXPECT_EQ(r->got_body, r->body_storage) << "nghttpd --echo-upload sends the body back";
  }
  const ClientStats st = client_->stats();
  EXPECT_GE(st.connections_opened, 1u);
  // nghttpd allows 100 streams per connection: 300 requests at once need at most 3.
  EXPECT_LE(st.connections_opened, 3u);
}

TEST_F(NghttpdTest, LargeBodiesCrossFlowControlWindows) {
  // -w 12: nghttpd grants 4 KiB stream windows, so a 200 KiB body stalls and resumes ~50 times.
  const std::uint16_t port = start_nghttpd(false, {"-w", "12", "-W", "14"});
  ClientOptions o = local_options();
  o.insecure = true;
  make_client(o);
  std::string big(200 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + (i % 26));
  auto reqs = make_requests(4, false, "127.0.0.1", port, big);
  run_all(reqs);
  for (auto& r : reqs) {
    ASSERT_EQ(r->got.failure, Failure::kNone) << r->got_detail;
    EXPECT_EQ(r->got.status, 200);
    EXPECT_EQ(r->got_body, big.substr(0, Request::kMaxBodyExcerpt)) << "first 64 KiB kept";
  }
}

TEST_F(NghttpdTest, AnswerBodyExcerptStopsAtTheRequestsLimit) {
  // nghttpd echoes the 200 KiB upload; a request that keeps 100 bytes holds 100 bytes (the
  // engine's deliveries keep 256: a waiting retry must not hold a large error page), over
  // HTTP/2 (the HTTP/1.1 case is the next test).
  const std::uint16_t port = start_nghttpd(false, {});
  ClientOptions o = local_options();
  o.insecure = true;
  make_client(o);
  const std::string big(200 * 1024, 'y');
  auto reqs = make_requests(2, false, "127.0.0.1", port, big);
  reqs[0]->max_body_excerpt = 100;
  reqs[1]->max_body_excerpt = 0;
  run_all(reqs);
  ASSERT_EQ(reqs[0]->got.failure, Failure::kNone) << reqs[0]->got_detail;
  EXPECT_EQ(reqs[0]->got_body, big.substr(0, 100));
  EXPECT_EQ(reqs[1]->got.status, 200);
  EXPECT_EQ(reqs[1]->got_body, "");
}

TEST_F(NghttpdTest, PeerStreamLimitQueuesTheRest) {
  // -m 2: at most two streams at once per connection; the rest wait in the pool and nghttp2.
  const std::uint16_t port = start_nghttpd(false, {"-m", "2"});
  ClientOptions o = local_options();
  o.insecure = true;
  o.max_connections_per_origin = 1;
  make_client(o);
  auto reqs = make_requests(60, false, "127.0.0.1", port);
  run_all(reqs);
  for (auto& r : reqs) ASSERT_EQ(r->got.status, 200) << to_string(r->got.failure);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

TEST_F(NghttpdTest, IdleConnectionsCloseAfterTheIdleTimeout) {
  const std::uint16_t port = start_nghttpd(false);
  ClientOptions o = local_options();
  o.insecure = true;
  o.idle_timeout_ms = 30;
  make_client(o);
  auto reqs = make_requests(1, false, "127.0.0.1", port);
  run_all(reqs);
  ASSERT_EQ(reqs[0]->got.status, 200);
  EXPECT_EQ(client_->stats().connections_h2, 1u);
  // The loop turns until the idle timer closes the connection (a 30 s guard fails the test).
  bool fired = false;
  TimerEntry guard([](TimerEntry&, void* d) noexcept { *static_cast<bool*>(d) = true; }, &fired);
  timers_->schedule_after(guard, 30'000);
  while (client_->stats().connections_h2 != 0 && !fired) uv_run(&loop_, UV_RUN_ONCE);
  timers_->cancel(guard);
  EXPECT_FALSE(fired);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

TEST_F(NghttpdTest, TlsWithTheTestCaVerifiesAndSpeaksH2) {
  const std::uint16_t port = start_nghttpd(true);
  ClientOptions o = local_options();
  o.ca_file = dir_.file("ca.pem");
  make_client(o);
  auto reqs = make_requests(50, true, "localhost", port);
  run_all(reqs);
  for (auto& r : reqs) {
    ASSERT_EQ(r->got.failure, Failure::kNone) << to_string(r->got.failure) << ": " << r->got_detail;
    EXPECT_EQ(r->got.status, 200);
    EXPECT_EQ(r->got.protocol, Protocol::kHttp2);
  }
}

TEST_F(NghttpdTest, TlsRefusesAnUnknownCa) {
  const std::uint16_t port = start_nghttpd(true);
  make_client(local_options());  // system trust store only
  auto reqs = make_requests(1, true, "localhost", port);
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kTlsFailure);
  EXPECT_NE(reqs[0]->got_detail.find("certificate"), std::string::npos) << reqs[0]->got_detail;
  EXPECT_TRUE(is_retryable(reqs[0]->got.failure));
}

TEST_F(NghttpdTest, TlsRefusesTheWrongHostName) {
  const std::uint16_t port = start_nghttpd(true, {}, "wrong");
  ClientOptions o = local_options();
  o.ca_file = dir_.file("ca.pem");
  make_client(o);
  auto reqs = make_requests(1, true, "127.0.0.1", port);
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kTlsFailure) << reqs[0]->got_detail;
}

TEST_F(NghttpdTest, TlsFailsWhenNoAlpnProtocolMatches) {
  const std::uint16_t port = start_nghttpd(true);  // nghttpd speaks h2 only
  ClientOptions o = local_options();
  o.ca_file = dir_.file("ca.pem");
  o.offer_h2 = false;  // offer http/1.1 only
  make_client(o);
  auto reqs = make_requests(1, true, "localhost", port);
  run_all(reqs);
  EXPECT_NE(reqs[0]->got.failure, Failure::kNone);
  EXPECT_EQ(reqs[0]->got.status, 0);
}

// --- Failures without a peer -----------------------------------------------------------------

TEST_F(ClientTest, RefusedConnectionIsReportedAndRetryable) {
  ClientOptions o = local_options();
  o.insecure = true;
  make_client(o);
  const fanout::testing::ClosedPort closed;
  auto reqs = make_requests(3, false, "127.0.0.1", closed.port());
  run_all(reqs);
  for (auto& r : reqs) {
    EXPECT_EQ(r->got.failure, Failure::kConnectRefused) << to_string(r->got.failure);
    EXPECT_TRUE(is_retryable(r->got.failure));
  }
}

TEST_F(ClientTest, AddressGuardRefusesLoopbackWithoutAnAllowList) {
  ClientOptions o;
  o.insecure = true;
  make_client(o);
  auto reqs = make_requests(2, false, "127.0.0.1", 9);
  run_all(reqs);
  for (auto& r : reqs) {
    EXPECT_EQ(r->got.failure, Failure::kAddressRefused);
    EXPECT_NE(r->got_detail.find("127.0.0.1"), std::string::npos) << r->got_detail;
    EXPECT_FALSE(is_retryable(r->got.failure));
  }
}

TEST_F(ClientTest, HttpIsRefusedOutsideInsecureMode) {
  make_client(local_options());
  auto reqs = make_requests(1, false, "127.0.0.1", 9);
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kSchemeRefused);
}

TEST_F(ClientTest, BlackHoleEndsInResponseTimeoutOverH2c) {
  SilentPeer& peer = silent_peer(false);
  ClientOptions o = local_options();
  o.insecure = true;
  o.response_timeout_ms = 40;
  make_client(o);
  auto reqs = make_requests(3, false, "127.0.0.1", peer.port());
  run_all(reqs);
  for (auto& r : reqs) {
    EXPECT_EQ(r->got.failure, Failure::kResponseTimeout) << to_string(r->got.failure);
    EXPECT_TRUE(is_retryable(r->got.failure));
  }
}

TEST_F(ClientTest, BlackHoleEndsInResponseTimeoutOverHttp1) {
  SilentPeer& peer = silent_peer(false);
  ClientOptions o = local_options();
  o.insecure = true;
  o.cleartext_h2 = false;
  o.response_timeout_ms = 40;
  make_client(o);
  auto reqs = make_requests(2, false, "127.0.0.1", peer.port());
  run_all(reqs);
  for (auto& r : reqs) EXPECT_EQ(r->got.failure, Failure::kResponseTimeout);
}

TEST_F(ClientTest, TlsHandshakeThatNeverCompletesIsAConnectTimeout) {
  SilentPeer& peer = silent_peer(false);
  ClientOptions o = local_options();
  o.connect_timeout_ms = 40;
  make_client(o);
  auto reqs = make_requests(2, true, "127.0.0.1", peer.port());
  run_all(reqs);
  for (auto& r : reqs)
    EXPECT_EQ(r->got.failure, Failure::kConnectTimeout) << to_string(r->got.failure);
}

TEST_F(ClientTest, PeerClosingTheSocketAfterTheRequestIsAConnectionLoss) {
  SilentPeer& peer = silent_peer(true);
  ClientOptions o = local_options();
  o.insecure = true;
  o.cleartext_h2 = false;
  make_client(o);
  auto reqs = make_requests(1, false, "127.0.0.1", peer.port());
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kConnectionLost) << to_string(reqs[0]->got.failure);
  EXPECT_TRUE(is_retryable(reqs[0]->got.failure));
}

ClientOptions http1_options() {
  ClientOptions o;
  o.allow.push_back(*Subnet::parse("127.0.0.1/32"));
  o.insecure = true;
  o.cleartext_h2 = false;
  return o;
}

TEST_F(ClientTest, Http1ChunkedResponseIsReadWhole) {
  SilentPeer& peer = silent_peer(false,
                                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  make_client(http1_options());
  auto reqs = make_requests(1, false, "127.0.0.1", peer.port());
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.status, 200) << to_string(reqs[0]->got.failure);
  EXPECT_EQ(reqs[0]->got_body, "hello world");
  EXPECT_EQ(reqs[0]->got.protocol, Protocol::kHttp1);
}

TEST_F(ClientTest, Http1AnswerBodyExcerptStopsAtTheRequestsLimit) {
  SilentPeer& peer = silent_peer(false,
                                 "HTTP/1.1 500 Oops\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  make_client(http1_options());
  auto reqs = make_requests(1, false, "127.0.0.1", peer.port());
  reqs[0]->max_body_excerpt = 7;
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.status, 500) << to_string(reqs[0]->got.failure);
  EXPECT_EQ(reqs[0]->got_body, "hello w");
}

TEST_F(ClientTest, Http1BodyDelimitedByCloseIsRead) {
  SilentPeer& peer = silent_peer(true, "HTTP/1.1 201 Created\r\n\r\nuntil-close");
  make_client(http1_options());
  auto reqs = make_requests(1, false, "127.0.0.1", peer.port());
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.status, 201) << to_string(reqs[0]->got.failure);
  EXPECT_EQ(reqs[0]->got_body, "until-close");
}

TEST_F(ClientTest, MalformedHttp1ResponseIsAProtocolError) {
  SilentPeer& peer = silent_peer(false, "HTTP/1.1 abc\r\n\r\n");
  make_client(http1_options());
  auto reqs = make_requests(1, false, "127.0.0.1", peer.port());
  run_all(reqs);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kProtocolError) << reqs[0]->got_detail;
  EXPECT_TRUE(is_retryable(reqs[0]->got.failure));
}

TEST_F(ClientTest, FullOriginQueueAnswersQueueFull) {
  SilentPeer& peer = silent_peer(false);
  ClientOptions o = local_options();
  o.insecure = true;
  o.max_pending_per_origin = 4;
  o.max_connections_per_origin = 1;
  o.max_streams_per_connection = 1;
  o.response_timeout_ms = 40;
  make_client(o);
  auto reqs = make_requests(8, false, "127.0.0.1", peer.port());
  run_all(reqs);
  std::size_t full = 0;
  for (auto& r : reqs) full += r->got.failure == Failure::kQueueFull ? 1u : 0u;
  EXPECT_EQ(full, 4u) << "4 queued, 4 refused";
}

TEST_F(ClientTest, CancelCompletesAQueuedRequestOnce) {
  SilentPeer& peer = silent_peer(false);
  ClientOptions o = local_options();
  o.insecure = true;
  o.response_timeout_ms = 60'000;
  make_client(o);
  auto reqs = make_requests(2, false, "127.0.0.1", peer.port());
  remaining_ = 2;
  client_->submit(*reqs[0]);
  client_->submit(*reqs[1]);
  client_->cancel(*reqs[0]);
  client_->cancel(*reqs[0]);  // second cancel: no-op
  EXPECT_FALSE(reqs[0]->done) << "never completed from inside cancel()";
  client_->cancel(*reqs[1]);
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kCancelled);
  EXPECT_EQ(reqs[1]->got.failure, Failure::kCancelled);
  EXPECT_EQ(remaining_, 0);
}

// --- nginx: HTTP/1.1 keep-alive and h2 over TLS, GOAWAY after N requests -----------------------

class NginxTest : public ClientTest {
 protected:
  void SetUp() override {
    ClientTest::SetUp();
    ASSERT_TRUE(fanout::testing::make_test_pki(dir_));
    // nginx cannot listen on port 0: it gets candidate ports, and its own listening sockets
    // (read from /proc) tell that it bound them; one that lost a port to another process
    // exits, and is started again on new ones.
    for (int tries = 0; tries < 5 && h1_port_ == 0; ++tries) start_nginx();
    ASSERT_NE(h1_port_, 0) << "nginx did not start";
  }
  void start_nginx() {
    const std::uint16_t h1 = fanout::testing::candidate_port();
    const std::uint16_t tls = fanout::testing::candidate_port();
    if (h1 == tls) return;
    const std::string d = dir_.path();
    dir_.write("nginx.conf",
               "daemon off; master_process off; worker_processes 1; pid " + d +
                   "/nginx.pid;\n"
                   "error_log " +
                   d +
                   "/error.log;\n"
                   "events { worker_connections 256; }\n"
                   "http {\n"
                   "  access_log off;\n"
                   "  client_body_temp_path " +
                   d + "/body; proxy_temp_path " + d +
                   "/proxy;\n"
                   "  fastcgi_temp_path " +
                   d + "/fcgi; uwsgi_temp_path " + d +
                   "/uwsgi;\n"
                   "  scgi_temp_path " +
                   d +
                   "/scgi;\n"
                   "  keepalive_requests 7;\n"
                   "  server {\n"
                   "    listen 127.0.0.1:" +
                   std::to_string(h1) +
                   ";\n"
                   "    location / { return 200 \"$http_x_auth_token|$content_type\"; }\n"
                   "  }\n"
                   "  server {\n"
                   "    listen 127.0.0.1:" +
                   std::to_string(tls) +
                   " ssl http2;\n"
                   "    ssl_certificate " +
                   d + "/server.pem; ssl_certificate_key " + d +
                   "/server.key;\n"
                   "    keepalive_requests 30;\n"
                   "    location / { return 200 \"$http_x_auth_token|$content_type\"; }\n"
                   "  }\n"
                   "}\n");
    peer_ = Child({"nginx", "-p", d, "-e", d + "/stderr.log", "-c", d + "/nginx.conf"});
    auto ports = fanout::testing::wait_listening(peer_.pid(), 2);
    std::sort(ports.begin(), ports.end());
    if (ports == std::vector<std::uint16_t>{std::min(h1, tls), std::max(h1, tls)}) {
      h1_port_ = h1;
      tls_port_ = tls;
    }
  }
  void add_header(Requests& reqs) {
    for (auto& r : reqs) {
      r->header_storage = {{"X-Auth-Token", "s3cr3t-value"}, {"X-Tenant", "acme"}};
      r->headers = r->header_storage;
    }
  }
  ScratchDir dir_;
  Child peer_;
  std::uint16_t h1_port_ = 0;
  std::uint16_t tls_port_ = 0;
};

TEST_F(NginxTest, Http1KeepAliveHonoursConnectionClose) {
  ClientOptions o = local_options();
  o.insecure = true;
  o.cleartext_h2 = false;
  o.max_connections_per_origin = 4;
  make_client(o);
  auto reqs = make_requests(100, false, "127.0.0.1", h1_port_);
  add_header(reqs);
  run_all(reqs);
  for (auto& r : reqs) {
    ASSERT_EQ(r->got.failure, Failure::kNone) << to_string(r->got.failure) << ": " << r->got_detail;
    EXPECT_EQ(r->got.status, 200);
    EXPECT_EQ(r->got.protocol, Protocol::kHttp1);
    EXPECT_EQ(r->got_body, "s3cr3t-value|application/json") << "custom header received";
  }
  // keepalive_requests 7: nginx closes each connection after 7 requests (Connection: close).
  EXPECT_GE(client_->stats().connections_opened, 100u / 7);
}

TEST_F(NginxTest, H2OverTlsRequeuesStreamsRefusedByGoaway) {
  ClientOptions o = local_options();
  o.ca_file = dir_.file("ca.pem");
  make_client(o);
  // 70 requests at once on connections that nginx closes with GOAWAY after 30 streams each:
  // the streams above last-stream-id are refused unprocessed and must be re-sent.
  auto reqs = make_requests(70, true, "localhost", tls_port_);
  add_header(reqs);
  run_all(reqs);
  for (auto& r : reqs) {
    ASSERT_EQ(r->got.failure, Failure::kNone) << to_string(r->got.failure) << ": " << r->got_detail;
    EXPECT_EQ(r->got.status, 200);
    EXPECT_EQ(r->got.protocol, Protocol::kHttp2);
    EXPECT_EQ(r->got_body, "s3cr3t-value|application/json");
  }
  EXPECT_GT(client_->stats().requeued, 0u) << "streams above last-stream-id were re-sent";
}

}  // namespace
}  // namespace fanout::transport
