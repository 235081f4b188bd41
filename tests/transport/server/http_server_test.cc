// HttpServer on a real loop over loopback, driven by clients nobody here wrote (curl, nghttp,
// h2load) spawned from the test's own loop, plus a raw TCP client for exact-byte cases
// (pipelining order, malformed requests). Every test ends with uv_loop_close() == 0.
#include "tests/transport/server/http_server_fixture.h"

namespace fanout::transport {
namespace {

using fanout::testing::LoopChild;
using testing_fixture::HttpServerTest;
using testing_fixture::random_bytes;
using testing_fixture::RawClient;
using testing_fixture::Seen;

// --- HTTP/1.1
// --------------------------------------------------------------------------------------

TEST_F(HttpServerTest, Http1PostFromCurlArrivesIntactAndIsEchoed) {
  start();
  const std::string body = random_bytes(100 * 1024, 1);
  const std::string file = dir_.write("body.bin", body);
  LoopChild& c =
      curl({"--http1.1", "--data-binary", "@" + file, "-H", "X-Partoo-Event-Id: ev-1", "-H",
            "Content-Type: application/json", "-D", dir_.file("headers.txt"), url("/hooks/a?x=1")});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_EQ(c.out(), "200 1.1");
  ASSERT_EQ(seen_.size(), 1u);
  const Seen& s = seen_[0];
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.target, "/hooks/a?x=1");
  EXPECT_EQ(s.authority, "127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(s.version, HttpVersion::kHttp1);
  EXPECT_FALSE(s.tls);
  EXPECT_EQ(s.header("x-partoo-event-id"), "ev-1");
  EXPECT_EQ(s.header("content-type"), "application/json");
  EXPECT_EQ(s.body, body);
  EXPECT_EQ(dir_.read("curl.out"), body);
  const std::string headers = dir_.read("headers.txt");
  EXPECT_NE(headers.find("x-echo-method: POST"), std::string::npos) << headers;
  EXPECT_NE(headers.find("x-echo-length: 102400"), std::string::npos) << headers;
}

TEST_F(HttpServerTest, Http1ChunkedRequestBodyIsDechunked) {
  start();
  const std::string body = random_bytes(70000, 2);
  const std::string file = dir_.write("body.bin", body);
  LoopChild& c =
      curl({"--http1.1", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + file, url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_EQ(c.out(), "200 1.1");
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].header("transfer-encoding"), "chunked");
  EXPECT_EQ(seen_[0].body, body);
  EXPECT_EQ(dir_.read("curl.out"), body);
}

TEST_F(HttpServerTest, Http1KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  LoopChild& c = curl({"--http1.1", url("/one"), url("/two"), url("/three")});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  ASSERT_EQ(seen_.size(), 3u);
  EXPECT_EQ(seen_[0].target, "/one");
  EXPECT_EQ(seen_[2].target, "/three");
  EXPECT_EQ(seen_[0].connection_id, seen_[2].connection_id);
  EXPECT_EQ(seen_[0].sequence, 1u);
  EXPECT_EQ(seen_[2].sequence, 3u);
  EXPECT_EQ(seen_[0].method, "GET");
}

TEST_F(HttpServerTest, Http1ExpectContinueGetsInterimResponse) {
  start();
  const std::string body = random_bytes(5000, 3);
  const std::string file = dir_.write("body.bin", body);
  LoopChild& c =
      curl({"--http1.1", "-v", "-H", "Expect: 100-continue", "--data-binary", "@" + file, url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_NE(c.err().find("HTTP/1.1 100 Continue"), std::string::npos) << c.err();
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].body, body);
}

TEST_F(HttpServerTest, Http1HeadAnswerCarriesNoBody) {
  start();
  LoopChild& c = curl({"--http1.1", "-I", url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_EQ(c.out(), "200 1.1");
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].method, "HEAD");
}

TEST_F(HttpServerTest, Http1PipelinedAnswersLeaveInRequestOrder) {
  start();
  std::vector<HttpResponder> held;
  handler_ = [&](const Seen& s, HttpResponder r) {
    held.push_back(r);
    if (held.size() < 3) return;
    // Answer the last first: the server must still write them in request order.
    for (int i = 2; i >= 0; --i) {
      const std::string body = "answer-" + seen_[static_cast<std::size_t>(i)].target.substr(1);
      EXPECT_TRUE(held[static_cast<std::size_t>(i)].respond(200, {}, body));
      EXPECT_FALSE(held[static_cast<std::size_t>(i)].pending());
      EXPECT_FALSE(held[static_cast<std::size_t>(i)].respond(500));  // already answered
    }
    (void)s;
  };
  RawClient raw;
  raw.start(&loop_, port_,
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  run_until([&] { return raw.closed(); });
  const std::string& got = raw.received();
  const std::size_t a = got.find("answer-a");
  const std::size_t b = got.find("answer-b");
  const std::size_t c = got.find("answer-c");
  ASSERT_NE(a, std::string::npos) << got;
  ASSERT_NE(b, std::string::npos) << got;
  ASSERT_NE(c, std::string::npos) << got;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_NE(got.find("connection: close"), std::string::npos);
  EXPECT_TRUE(raw.saw_eof());
  ASSERT_EQ(seen_.size(), 3u);
  EXPECT_EQ(seen_[1].body, "abc");
}

TEST_F(HttpServerTest, Http1PipelinedLoadFromH2load) {
  start();
  const std::string file = dir_.write("body.json", std::string(600, 'j'));
  LoopChild& c = spawn({"h2load", "--h1", "-n", "300", "-c", "3", "-m", "10", "-d", file, url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_NE(c.out().find("300 succeeded"), std::string::npos) << c.out();
  EXPECT_NE(c.out().find("300 2xx"), std::string::npos) << c.out();
  EXPECT_EQ(seen_.size(), 300u);
}

TEST_F(HttpServerTest, Http1MalformedRequestGets400AndClose) {
  start();
  RawClient raw;
  raw.start(&loop_, port_, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n");
  RawClient raw2;
  raw2.start(&loop_, port_, "GET / HTTP/1.1\r\nHost: x\r\nHost\x01: y\r\n\r\n");
  run_until([&] { return raw.closed() && raw2.closed(); });
  EXPECT_EQ(raw.received().rfind("HTTP/1.1 400 ", 0), 0u) << raw.received();
  EXPECT_TRUE(raw.saw_eof());
  EXPECT_EQ(raw2.received().rfind("HTTP/1.1 400 ", 0), 0u) << raw2.received();
  EXPECT_TRUE(seen_.empty());
}

TEST_F(HttpServerTest, Http1ErrorAnswerWaitsForEarlierPipelinedAnswers) {
  start();
  RawClient raw;
  raw.start(&loop_, port_, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
  run_until([&] { return raw.closed(); });
  const std::string& got = raw.received();
  EXPECT_EQ(got.rfind("HTTP/1.1 200 ", 0), 0u) << got;
  EXPECT_NE(got.find("HTTP/1.1 400 "), std::string::npos) << got;
  ASSERT_EQ(seen_.size(), 1u);
}

TEST_F(HttpServerTest, Http1LimitsAnswer431And413) {
  HttpServerOptions o;
  o.max_header_bytes = 1024;
  o.max_body_bytes = 4096;
  start(std::move(o));
  const std::string big = dir_.write("big.bin", random_bytes(10000, 4));
  LoopChild& h = curl({"--http1.1", "-H", "X-Big: " + std::string(2000, 'h'), url()});
  LoopChild& declared = curl({"--http1.1", "--data-binary", "@" + big, url()});
  LoopChild& chunked =
      curl({"--http1.1", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + big, url()});
  LoopChild& fine = curl({"--http1.1", "--data-binary", "small", url()});
  run_children();
  EXPECT_EQ(h.out(), "431 1.1") << h.describe();
  EXPECT_EQ(declared.out(), "413 1.1") << declared.describe();
  EXPECT_EQ(chunked.out(), "413 1.1") << chunked.describe();
  EXPECT_EQ(fine.out(), "200 1.1") << fine.describe();
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].body, "small");
}

TEST_F(HttpServerTest, Http1ResetClosesTheConnection) {
  start();
  handler_ = [](const Seen&, HttpResponder r) { EXPECT_TRUE(r.reset()); };
  LoopChild& c = curl({"--http1.1", url()});
  run_children();
  EXPECT_EQ(c.exit_status(), 52) << c.describe();  // "Empty reply from server"
}

TEST_F(HttpServerTest, Http1GoawayClosesAfterTheAnswer) {
  start();
  handler_ = [](const Seen&, HttpResponder r) {
    EXPECT_TRUE(r.goaway(GoawayMode::kGraceful));
    EXPECT_TRUE(r.respond(200, {}, "bye"));
  };
  RawClient raw;
  raw.start(&loop_, port_, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until([&] { return raw.closed(); });
  EXPECT_NE(raw.received().find("connection: close"), std::string::npos) << raw.received();
  EXPECT_EQ(raw.received().find("HTTP/1.1", 1), std::string::npos) << "second answered";
  EXPECT_TRUE(raw.saw_eof());
  EXPECT_EQ(seen_.size(), 1u);
}

// --- HTTP/2 over cleartext (prior knowledge)
// -------------------------------------------------------

TEST_F(HttpServerTest, H2cPriorKnowledgeFromCurlAndHttp1OnTheSamePort) {
  start();
  const std::string body = random_bytes(300 * 1024, 5);  // several flow-control windows
  const std::string file = dir_.write("body.bin", body);
  LoopChild& h2 = curl({"--http2-prior-knowledge", "--data-binary", "@" + file, "-H",
                        "X-Partoo-Event-Id: ev-2", url("/h2")});
  LoopChild& h1 = spawn({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                         "--http1.1", url("/h1")});
  run_children();
  ASSERT_EQ(h2.exit_status(), 0) << h2.describe();
  ASSERT_EQ(h1.exit_status(), 0) << h1.describe();
  EXPECT_EQ(h2.out(), "200 2");
  EXPECT_EQ(h1.out(), "200 1.1");
  ASSERT_EQ(seen_.size(), 2u);
  const Seen& s = seen_[0].target == "/h2" ? seen_[0] : seen_[1];
  EXPECT_EQ(s.version, HttpVersion::kHttp2);
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.authority, "127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(s.header("x-partoo-event-id"), "ev-2");
  EXPECT_EQ(s.body, body);
  EXPECT_EQ(dir_.read("curl.out"), body);
}

TEST_F(HttpServerTest, H2cUpgradeRequestIsAnsweredInHttp1) {
  start();
  LoopChild& c = curl({"--http2", "--data-binary", "hello", url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_EQ(c.out(), "200 1.1");
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].body, "hello");
}

TEST_F(HttpServerTest, H2cFromNghttpSeesHeadersAndBody) {
  start();
  const std::string body = random_bytes(20000, 6);
  const std::string file = dir_.write("body.bin", body);
  handler_ = [](const Seen& s, HttpResponder r) {
    const std::string got = s.header("x-custom");
    const HttpHeaderView h[] = {{"x-got", got}};
    EXPECT_TRUE(r.respond(201, h, "created"));
  };
  LoopChild& c = spawn({"nghttp", "-v", "-d", file, "-H", "x-custom: abc", url("/n")});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_NE(c.out().find(":status: 201"), std::string::npos) << c.out();
  EXPECT_NE(c.out().find("x-got: abc"), std::string::npos) << c.out();
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].body, body);
}

TEST_F(HttpServerTest, H2cLoadFromH2load) {
  start();
  const std::string file = dir_.write("body.json", std::string(600, 'j'));
  LoopChild& c = spawn({"h2load", "-n", "500", "-c", "2", "-m", "50", "-d", file, "-H",
                        "x-partoo-event-id: same", url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_NE(c.out().find("500 succeeded"), std::string::npos) << c.out();
  EXPECT_EQ(seen_.size(), 500u);
  for (const Seen& s : seen_) {
    ASSERT_EQ(s.body.size(), 600u);
    ASSERT_EQ(s.header("x-partoo-event-id"), "same");
  }
}

TEST_F(HttpServerTest, H2AsyncAnswersInAnyOrder) {
  start();
  std::vector<HttpResponder> held;
  handler_ = [&](const Seen&, HttpResponder r) {
    held.push_back(r);
    if (held.size() < 4) return;
    for (std::size_t i = held.size(); i-- > 0;) {
      EXPECT_TRUE(held[i].respond(static_cast<int>(200 + i), {}, "r" + std::to_string(i)));
    }
  };
  LoopChild& c = spawn({"nghttp", "-v", "-m", "4", url("/m")});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  for (const char* st : {":status: 200", ":status: 201", ":status: 202", ":status: 203"}) {
    EXPECT_NE(c.out().find(st), std::string::npos) << c.out();
  }
}

TEST_F(HttpServerTest, H2LimitsAnswer431And413) {
  HttpServerOptions o;
  o.max_header_bytes = 1024;
  o.max_body_bytes = 4096;
  start(std::move(o));
  const std::string big = dir_.write("big.bin", random_bytes(100000, 7));
  LoopChild& h = curl({"--http2-prior-knowledge", "-H", "X-Big: " + std::string(2000, 'h'), url()});
  LoopChild& b = spawn({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                        "--http2-prior-knowledge", "--data-binary", "@" + big, url()});
  // Past 1 MiB of discarded body the server resets the stream (after its answer).
  const std::string huge = dir_.write("huge.bin", random_bytes(3 * 1024 * 1024, 8));
  LoopChild& n = spawn({"nghttp", "-v", "-d", huge, url("/huge")});
  run_children();
  EXPECT_EQ(h.out(), "431 2") << h.describe();
  EXPECT_EQ(b.out(), "413 2") << b.describe();
  EXPECT_NE(n.out().find(":status: 413"), std::string::npos) << n.describe();
  EXPECT_NE(n.out().find("recv RST_STREAM"), std::string::npos) << n.describe();
  EXPECT_NE(n.out().find("error_code=NO_ERROR"), std::string::npos) << n.describe();
  EXPECT_TRUE(seen_.empty());
}

TEST_F(HttpServerTest, H2ResetIsSeenByTheClient) {
  start();
  handler_ = [](const Seen&, HttpResponder r) {
    EXPECT_TRUE(r.reset());
    EXPECT_FALSE(r.respond(200));
  };
  LoopChild& c = spawn({"nghttp", "-v", url()});
  run_children();
  EXPECT_NE(c.out().find("recv RST_STREAM frame"), std::string::npos) << c.describe();
  EXPECT_NE(c.out().find("INTERNAL_ERROR"), std::string::npos) << c.describe();
}

TEST_F(HttpServerTest, H2GracefulGoawayStillAnswersAcceptedStreams) {
  start();
  int n = 0;
  handler_ = [&](const Seen&, HttpResponder r) {
    if (++n == 1) {
      EXPECT_TRUE(r.goaway(GoawayMode::kGraceful));
    }
    EXPECT_TRUE(r.respond(200, {}, "ok"));
  };
  LoopChild& c = spawn({"nghttp", "-v", url()});
  run_children();
  ASSERT_EQ(c.exit_status(), 0) << c.describe();
  EXPECT_NE(c.out().find("recv GOAWAY frame"), std::string::npos) << c.out();
  EXPECT_NE(c.out().find("last_stream_id=13"), std::string::npos) << c.out();
  EXPECT_NE(c.out().find(":status: 200"), std::string::npos) << c.out();
}

TEST_F(HttpServerTest, H2ImmediateGoawayAbandonsTheRequest) {
  start();
  HttpResponder kept;
  handler_ = [&](const Seen&, HttpResponder r) {
    kept = r;
    EXPECT_TRUE(r.goaway(GoawayMode::kImmediate));
  };
  LoopChild& c = spawn({"nghttp", "-v", url()});
  run_children();
  EXPECT_NE(c.out().find("recv GOAWAY frame"), std::string::npos) << c.describe();
  EXPECT_EQ(c.out().find(":status:"), std::string::npos) << c.describe();
  EXPECT_FALSE(kept.respond(200));  // the connection is gone
}

// --- TLS
// ---------------------------------------------------------------------------------------------

TEST_F(HttpServerTest, TlsAlpnSelectsH2OrHttp1) {
  start_tls();
  const std::string ca = dir_.file("c.pem");
  const std::string file = dir_.write("body.bin", random_bytes(50000, 8));
  LoopChild& h2 = curl({"--cacert", ca, "--http2", "--data-binary", "@" + file, url("/t2", true)});
  LoopChild& h1 = spawn({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                         "--cacert", ca, "--http1.1", url("/t1", true)});
  LoopChild& ng = spawn({"nghttp", "-v", url("/tn", true)});
  LoopChild& load = spawn({"h2load", "-n", "200", "-c", "2", "-m", "10", url("/tl", true)});
  LoopChild& load1 = spawn({"h2load", "--h1", "-n", "100", "-c", "2", url("/tl1", true)});
  run_children();
  ASSERT_EQ(h2.exit_status(), 0) << h2.describe();
  EXPECT_EQ(h2.out(), "200 2");
  EXPECT_EQ(h1.out(), "200 1.1") << h1.describe();
  EXPECT_NE(ng.out().find(":status: 200"), std::string::npos) << ng.describe();
  EXPECT_NE(load.out().find("200 succeeded"), std::string::npos) << load.describe();
  EXPECT_NE(load1.out().find("100 succeeded"), std::string::npos) << load1.describe();
  EXPECT_EQ(dir_.read("curl.out"), random_bytes(50000, 8));
  ASSERT_EQ(seen_.size(), 303u);
  for (const Seen& s : seen_) {
    EXPECT_TRUE(s.tls);
    if (s.target == "/t2" || s.target == "/tn" || s.target == "/tl") {
      EXPECT_EQ(s.version, HttpVersion::kHttp2) << s.target;
    } else {
      EXPECT_EQ(s.version, HttpVersion::kHttp1) << s.target;
    }
  }
}

TEST_F(HttpServerTest, TlsHandshakeFailureLeavesTheServerServing) {
  start_tls();
  // Cleartext to the TLS port: the handshake fails, the server carries on.
  LoopChild& bad = curl({"--http1.1", url()});
  run_children();
  EXPECT_NE(bad.exit_status(), 0);
  LoopChild& good = spawn({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                           dir_.file("c.pem"), url("/", true)});
  run_children();
  EXPECT_EQ(good.out(), "200") << good.describe();
}

// --- Lifetimes and stopping
// ------------------------------------------------------------------------

TEST_F(HttpServerTest, LargeAnswerIsWrittenThroughBackpressure) {
  start();
  const std::string big = random_bytes(3 * 1024 * 1024, 9);
  handler_ = [&](const Seen&, HttpResponder r) { EXPECT_TRUE(r.respond(200, {}, big)); };
  LoopChild& h2 =
      spawn({"curl", "-sS", "-o", dir_.file("h2.out"), "--http2-prior-knowledge", url()});
  LoopChild& h1 = spawn({"curl", "-sS", "-o", dir_.file("h1.out"), "--http1.1", url()});
  run_children();
  ASSERT_EQ(h2.exit_status(), 0) << h2.describe();
  ASSERT_EQ(h1.exit_status(), 0) << h1.describe();
  EXPECT_TRUE(dir_.read("h2.out") == big);
  EXPECT_TRUE(dir_.read("h1.out") == big);
}

TEST_F(HttpServerTest, AnswerAfterTheClientLeftIsRefusedSafely) {
  start();
  std::vector<HttpResponder> held;
  handler_ = [&](const Seen&, HttpResponder r) { held.push_back(r); };
  RawClient raw;
  raw.on_data = [](RawClient&) {};
  raw.start(&loop_, port_, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until([&] { return held.size() == 1; });
  EXPECT_TRUE(held[0].pending());
  raw.close();
  run_until([&] { return raw.closed() && server_->connections() == 0; });
  EXPECT_FALSE(held[0].pending());
  EXPECT_FALSE(held[0].respond(200, {}, "late"));
  EXPECT_FALSE(held[0].reset());
  EXPECT_FALSE(held[0].goaway(GoawayMode::kGraceful));
  EXPECT_FALSE(held[0].close_connection());
  EXPECT_FALSE(HttpResponder().respond(200));
}

TEST_F(HttpServerTest, CloseEndsBlackHoledRequests) {
  start();
  std::vector<HttpResponder> held;
  handler_ = [&](const Seen&, HttpResponder r) {
    held.push_back(r);
    if (held.size() == 2) server_->close();
  };
  LoopChild& h1 = curl({"--http1.1", url()});
  LoopChild& h2 = spawn({"curl", "-sS", "--http2-prior-knowledge", url()});
  run_children();
  EXPECT_NE(h1.exit_status(), 0);
  EXPECT_NE(h2.exit_status(), 0);
  for (const HttpResponder& r : held) EXPECT_FALSE(r.respond(200));
  stop_server(false);  // close() again: the callback comes once everything is closed
}

TEST_F(HttpServerTest, DrainLetsAcceptedRequestsFinish) {
  start();
  std::vector<HttpResponder> held;
  uv_idle_t later{};
  handler_ = [&](const Seen&, HttpResponder r) {
    held.push_back(r);
    if (held.size() < 2) return;
    server_->drain();
    // Answer after the drain started, from a later loop turn.
    uv_idle_init(&loop_, &later);
    later.data = &held;
    uv_idle_start(&later, [](uv_idle_t* h) {
      for (auto& x : *static_cast<std::vector<HttpResponder>*>(h->data)) {
        EXPECT_TRUE(x.respond(200, {}, "late"));
      }
      uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    });
  };
  LoopChild& h1 = curl({"--http1.1", url()});
  LoopChild& h2 = spawn({"nghttp", "-v", url()});
  run_children();
  EXPECT_EQ(h1.out(), "200 1.1") << h1.describe();
  EXPECT_NE(h2.out().find("recv GOAWAY frame"), std::string::npos) << h2.describe();
  EXPECT_NE(h2.out().find(":status: 200"), std::string::npos) << h2.describe();
  stop_server(true);
}

TEST_F(HttpServerTest, DrainClosesIdleConnectionsAtOnce) {
  start();
  RawClient raw;
  raw.start(&loop_, port_, "");
  // Wait until the server holds the connection, then drain: the idle connection closes.
  run_until([&] { return server_->connections() == 1; });
  stop_server(true);
  run_until([&] { return raw.closed(); });
  EXPECT_TRUE(raw.saw_eof());
  EXPECT_TRUE(raw.received().empty());
}

TEST(HttpServerCreateTest, BadAddressAndBusyPortAreErrors) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto streams = std::make_unique<StreamLoop>(&loop);
  struct Nop final : HttpRequestHandler {
    virtual ~Nop() = default;
    void on_request(const HttpRequest&, HttpResponder) override {}
  } nop;
  HttpServerOptions bad;
  bad.host = "localhost";  // numeric addresses only
  EXPECT_FALSE(HttpServer::create(*streams, bad, &nop).has_value());
  auto first = HttpServer::create(*streams, {}, &nop);
  ASSERT_TRUE(first.has_value()) << first.error();
  HttpServerOptions same;
  same.port = (*first)->port();
  auto second = HttpServer::create(*streams, same, &nop);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().find("address already in use"), std::string::npos) << second.error();
  (*first)->close();
  streams->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  first->reset();
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace fanout::transport
