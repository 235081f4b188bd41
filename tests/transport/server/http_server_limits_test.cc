// What one client may hold of an HttpServer (transport/server/http_server.h, "Clients that do not
// read", "Early refusal"): output it does not read (max_unsent_output_bytes, write_timeout_ms),
// connections (max_connections), and bodies the handler refuses on their headers (on_headers).
// Each test fails without its limit: the server would answer every pipelined request, keep a
// non-reading client forever, accept every connection, or buffer the whole body first.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/transport/server/http_server_fixture.h"

namespace fanout::transport {
namespace {

using fanout::testing::LoopChild;
using testing_fixture::HttpServerTest;
using testing_fixture::RawClient;
using testing_fixture::Seen;

std::size_t count_of(const std::string& haystack, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

class HttpServerLimitsTest : public HttpServerTest {
 protected:
  // Answers every request with `answer_bytes` of 'a', and its sequence in x-n.
  void answer_big(std::size_t answer_bytes) {
    body_ = std::string(answer_bytes, 'a');
    handler_ = [this](const Seen& s, HttpResponder r) {
      const std::string n = std::to_string(s.sequence);
      const HttpHeaderView h[] = {{"x-n", n}};
      EXPECT_TRUE(r.respond(200, h, body_));
    };
  }
  EarlyAnswer on_headers(const HttpRequest& head) override {
    ++heads_;
    if (!refuse_without_key_ || head.header("authorization") == "good") return {};
    static constexpr HttpHeaderView kJson[] = {{"content-type", "application/json"}};
    return {401, kJson, R"({"errors":{"authorization":["invalid key"]}})"};
  }

  std::string body_;
  int heads_ = 0;
  bool refuse_without_key_ = false;
};

// A client that pipelines many GETs and never reads: far more answer bytes than the kernel's
// socket buffers hold. The server stops reading once its own unsent output passes the bound,
// so it answers only part of them; once the client reads, every answer arrives, in order.
TEST_F(HttpServerLimitsTest, PipelinerThatDoesNotReadStopsBeingReadAtTheOutputBound) {
  constexpr int kRequests = 4000;
  constexpr std::size_t kAnswer = 16 * 1024;  // 64 MB in all
  HttpServerOptions o;
  o.max_unsent_output_bytes = 64 * 1024;
  o.write_timeout_ms = 0;
  start(std::move(o));
  answer_big(kAnswer);
  std::string requests;
  for (int i = 0; i < kRequests; ++i) requests += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  RawClient raw;
  raw.read_on_connect = false;
  raw.start(&loop_, port_, requests);
  run_until([&] {
    return server_->read_pauses() >= 1 || seen_.size() == static_cast<std::size_t>(kRequests);
  });
  ASSERT_GE(server_->read_pauses(), 1u) << "answered all " << seen_.size() << " unread";
  EXPECT_LT(seen_.size(), static_cast<std::size_t>(kRequests));
  // Reading now: the rest of the pipeline is parsed from where it stopped.
  raw.start_reading();
  run_until([&] { return count_of(raw.received(), "HTTP/1.1 200 OK\r\n") == kRequests; });
  ASSERT_EQ(seen_.size(), static_cast<std::size_t>(kRequests));
  for (std::size_t i = 0; i < seen_.size(); ++i) ASSERT_EQ(seen_[i].sequence, i + 1);
  // Answers in request order (x-n is each request's sequence), none torn.
  std::size_t at = 0;
  for (int i = 1; i <= kRequests; ++i) {
    at = raw.received().find("x-n: ", at);
    ASSERT_NE(at, std::string::npos) << "answer " << i;
    ASSERT_EQ(raw.received().compare(at + 5, std::to_string(i).size(), std::to_string(i)), 0)
        << "answer " << i;
    at += 5;
  }
  raw.close();
  run_until([&] { return raw.closed(); });
}

// Output that never drains (the client never reads) closes the connection at write_timeout_ms.
TEST_F(HttpServerLimitsTest, WriteTimeoutClosesAConnectionThatNeverReads) {
  HttpServerOptions o;
  o.write_timeout_ms = 100;
  o.idle_timeout_ms = 0;
  start(std::move(o));
  answer_big(256 * 1024);
  std::string requests;
  for (int i = 0; i < 200; ++i) requests += "GET / HTTP/1.1\r\nHost: x\r\n\r\n";  // ~50 MB
  RawClient raw;
  raw.read_on_connect = false;
  raw.start(&loop_, port_, requests);
  run_until([&] { return server_->write_timeouts() == 1; });
  run_until([&] { return server_->connections() == 0; });
  raw.close();
  run_until([&] { return raw.closed(); });
}

// Past max_connections a new connection is closed at accept, unanswered; a slot freed is
// usable again.
TEST_F(HttpServerLimitsTest, ConnectionsPastTheCapAreClosedAtAccept) {
  HttpServerOptions o;
  o.max_connections = 2;
  start(std::move(o));
  RawClient a, b, c;
  a.start(&loop_, port_, "");
  b.start(&loop_, port_, "");
  run_until([&] { return server_->connections() == 2 && a.connected() && b.connected(); });
  c.start(&loop_, port_, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  run_until([&] { return c.closed(); });
  EXPECT_TRUE(c.saw_eof());
  EXPECT_TRUE(c.received().empty());
  EXPECT_EQ(server_->refused_connections(), 1u);
  EXPECT_TRUE(seen_.empty());
  a.close();
  run_until([&] { return a.closed() && server_->connections() == 1; });
  RawClient d;
  d.start(&loop_, port_, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  run_until([&] { return d.closed(); });
  EXPECT_EQ(d.received().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << d.received();
  EXPECT_EQ(server_->refused_connections(), 1u);
  b.close();
  run_until([&] { return b.closed(); });
}

// HTTP/1.1: a request announcing 8 MB is refused on its headers; the server neither waits for
// nor buffers the body, and on_request never sees it. A good key goes through.
TEST_F(HttpServerLimitsTest, Http1RequestRefusedOnItsHeadersBeforeTheBody) {
  HttpServerOptions o;
  o.max_body_bytes = 16 * 1024 * 1024;
  start(std::move(o));
  refuse_without_key_ = true;
  RawClient bad;
  bad.start(&loop_, port_,
            "POST /v2/events HTTP/1.1\r\nHost: x\r\nAuthorization: bad\r\n"
            "Content-Length: 8000000\r\n\r\n{\"first\":");
  run_until([&] { return testing_fixture::has_final_answer(bad.received()); });
  EXPECT_EQ(bad.received().rfind("HTTP/1.1 401 Unauthorized\r\n", 0), 0u) << bad.received();
  EXPECT_NE(bad.received().find(R"({"errors":{"authorization":["invalid key"]}})"),
            std::string::npos);
  EXPECT_NE(bad.received().find("content-type: application/json"), std::string::npos);
  EXPECT_TRUE(seen_.empty());
  run_until([&] { return bad.closed(); });
  LoopChild& good =
      curl({"--http1.1", "-H", "Authorization: good", "--data-binary", "payload", url("/x")});
  // GET without a body: on_headers is not asked (nothing to protect).
  LoopChild& get = curl({"--http1.1", url("/y")});
  run_children();
  EXPECT_EQ(good.out(), "200 1.1") << good.describe();
  EXPECT_EQ(get.out(), "200 1.1") << get.describe();
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(heads_, 2);  // the bad POST and the good one
}

// HTTP/2: the stream is answered on its HEADERS; other streams of the connection go on.
TEST_F(HttpServerLimitsTest, Http2RequestRefusedOnItsHeadersBeforeTheBody) {
  start();
  refuse_without_key_ = true;
  const std::string body = dir_.write("body.bin", std::string(200 * 1024, 'b'));
  LoopChild& bad = curl({"--http2-prior-knowledge", "-H", "authorization: bad", "--data-binary",
                         "@" + body, url("/v2/events")});
  LoopChild& good = curl({"--http2-prior-knowledge", "-H", "authorization: good", "--data-binary",
                          "@" + body, url("/v2/events")});
  run_children();
  EXPECT_EQ(bad.out(), "401 2") << bad.describe();
  EXPECT_EQ(good.out(), "200 2") << good.describe();
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].header("authorization"), "good");
  EXPECT_EQ(seen_[0].body.size(), 200u * 1024);
}

}  // namespace
}  // namespace fanout::transport
