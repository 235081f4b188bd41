// The client's DNS (transport/resolver.h) against a DNS server of the test's own on loopback
// (tests/transport/dns_server.h), and origin eviction. Everything runs on one loop: the DNS
// server, an HttpServer answering 200, and the client. No test waits for time to pass except
// through the client's own timeouts; "no stall" is shown by ordering (a good name completes
// while a black-holed query is provably still outstanding).
#include "transport/resolver.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/transport/dns_server.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"

namespace fanout::transport {
namespace {

struct DnsRequest final : Request {
  Response got;
  std::string got_detail;
  bool done = false;
  int order = 0;  // completion rank, from 1
  int* completed = nullptr;

  void on_response(const Response& r) override {
    got = r;
    got_detail.assign(r.detail);
    got.detail = got_detail;
    got.body = {};
    done = true;
    order = ++*completed;
  }
};

class ResolverTest : public ::testing::Test, public HttpRequestHandler {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    streams_ = std::make_unique<StreamLoop>(&loop_);
    timers_ = std::make_unique<LoopTimer>(&loop_);
    guard_.bind<&ResolverTest::on_guard>(this);
    dns_ = std::make_unique<fanout::testing::DnsServer>(&loop_);
    dns_->add("good.test", {"127.0.0.1"});
    dns_->add("private.test", {"10.1.2.3"});
    dns_->add("mixed.test", {"10.1.2.3", "127.0.0.1"});
    dns_->black_hole_suffix("blackhole.test");
    auto s = HttpServer::create(*streams_, HttpServerOptions{}, this);
    ASSERT_TRUE(s.has_value()) << s.error();
    server_ = std::move(*s);
  }

  void TearDown() override {
    if (client_) {
      bool closed = false;
      client_->close([](void* d) { *static_cast<bool*>(d) = true; }, &closed);
      while (!closed) uv_run(&loop_, UV_RUN_ONCE);
      client_.reset();
    }
    if (server_) {
      bool closed = false;
      server_->close([](HttpServer*, void* d) noexcept { *static_cast<bool*>(d) = true; }, &closed);
      while (!closed) uv_run(&loop_, UV_RUN_ONCE);
      server_.reset();
    }
    dns_->close();
    timers_->cancel(guard_);
    streams_->close();
    timers_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle leaked";
  }

  void on_request(const HttpRequest&, HttpResponder responder) override {
    EXPECT_TRUE(responder.respond(200, {}, "ok"));
  }

  ClientOptions options() const {
    ClientOptions o;
    o.insecure = true;
    o.cleartext_h2 = false;  // HTTP/1.1: the smallest exchange
    o.allow.push_back(*Subnet::parse("127.0.0.1/32"));
    o.dns_servers = dns_->address();
    o.dns_timeout_ms = 60'000;  // black holes stay outstanding unless a test shortens this
    o.dns_tries = 1;
    return o;
  }

  void make_client(ClientOptions o) {
    auto c = Client::create(*streams_, *timers_, std::move(o));
    ASSERT_TRUE(c.has_value()) << c.error();
    client_ = std::move(*c);
  }

  // The request is the fixture's (it must outlive the client, closed in TearDown).
  DnsRequest* submit(std::string host) {
    auto* r = reqs_.emplace_back(std::make_unique<DnsRequest>()).get();
    hosts_.push_back(std::make_unique<std::string>(std::move(host)));
    r->tls = false;
    r->host = *hosts_.back();
    r->port = server_->port();
    r->target = "/hook";
    r->body = "{}";
    r->completed = &completed_;
    client_->submit(*r);
    return r;
  }

  // Runs the loop until `done()` holds; a 30 s guard fails the test instead of hanging.
  void run_until(const std::function<bool()>& done) {
    timers_->schedule_after(guard_, 30'000);
    while (!done() && !timed_out_) uv_run(&loop_, UV_RUN_ONCE);
    timers_->cancel(guard_);
    ASSERT_FALSE(timed_out_) << "condition not reached within 30 s";
  }

  void on_guard() noexcept {
    ADD_FAILURE() << "guard fired";
    timed_out_ = true;
  }

  uv_loop_t loop_{};
  std::unique_ptr<StreamLoop> streams_;
  std::unique_ptr<LoopTimer> timers_;
  std::unique_ptr<fanout::testing::DnsServer> dns_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<Client> client_;
  std::vector<std::unique_ptr<std::string>> hosts_;
  std::vector<std::unique_ptr<DnsRequest>> reqs_;
  TimerEntry guard_;
  bool timed_out_ = false;
  int completed_ = 0;
};

TEST_F(ResolverTest, GoodNameConnectsWhileABlackHoledQueryIsOutstanding) {
  make_client(options());
  auto bad = submit("a.blackhole.test");
  run_until([&] { return dns_->seen("a.blackhole.test") > 0; });
  auto good = submit("good.test");
  run_until([&] { return good->done; });
  EXPECT_EQ(good->got.failure, Failure::kNone) << good->got_detail;
  EXPECT_EQ(good->got.status, 200);
  EXPECT_FALSE(bad->done) << "the black-holed lookup ended first: " << bad->got_detail;
  const ClientStats st = client_->stats();
  EXPECT_EQ(st.dns_querying, 1u);
  EXPECT_EQ(st.origins, 2u);
  // Closing the client cancels the lookup still out.
  bool closed = false;
  client_->close([](void* d) { *static_cast<bool*>(d) = true; }, &closed);
  run_until([&] { return closed && bad->done; });
  EXPECT_EQ(bad->got.failure, Failure::kCancelled);
  client_.reset();
}

TEST_F(ResolverTest, ManyUniqueBlackHoledNamesDoNotBlockAGoodOne) {
  make_client(options());
  constexpr int kBad = 64;  // 16 times what libuv's thread pool could have held
  std::vector<DnsRequest*> bad;
  for (int i = 0; i < kBad; ++i) bad.push_back(submit("n" + std::to_string(i) + ".blackhole.test"));
  run_until([&] { return dns_->names_seen() == kBad; });
  auto good = submit("good.test");
  run_until([&] { return good->done; });
  EXPECT_EQ(good->got.status, 200) << good->got_detail;
  for (DnsRequest* r : bad) EXPECT_FALSE(r->done);
  EXPECT_EQ(client_->stats().dns_querying, static_cast<std::size_t>(kBad));
}

TEST_F(ResolverTest, BlackHoledNameTimesOutWithARetryableDnsFailure) {
  ClientOptions o = options();
  o.dns_timeout_ms = 20;
  make_client(o);
  auto bad = submit("t.blackhole.test");
  run_until([&] { return bad->done; });
  EXPECT_EQ(bad->got.failure, Failure::kDnsFailure) << to_string(bad->got.failure);
  EXPECT_TRUE(is_retryable(bad->got.failure));
  EXPECT_NE(bad->got_detail.find("timeout"), std::string::npos) << bad->got_detail;
  EXPECT_EQ(client_->stats().dns_failures, 1u);
  // The same origin resolves again on the next request (no negative cache): another timeout.
  auto again = submit("t.blackhole.test");
  run_until([&] { return again->done; });
  EXPECT_EQ(again->got.failure, Failure::kDnsFailure);
  EXPECT_GE(dns_->seen("t.blackhole.test"), 2);
}

TEST_F(ResolverTest, NxdomainIsARetryableDnsFailure) {
  make_client(options());
  auto r = submit("missing.test");
  run_until([&] { return r->done; });
  EXPECT_EQ(r->got.failure, Failure::kDnsFailure);
  EXPECT_TRUE(is_retryable(r->got.failure));
  EXPECT_NE(r->got_detail.find("no such host"), std::string::npos) << r->got_detail;
}

TEST_F(ResolverTest, AddressGuardChecksEveryResolvedAddress) {
  make_client(options());  // 127.0.0.1/32 allowed, 10/8 not
  auto priv = submit("private.test");
  auto mixed = submit("mixed.test");
  run_until([&] { return priv->done && mixed->done; });
  EXPECT_EQ(priv->got.failure, Failure::kAddressRefused) << priv->got_detail;
  EXPECT_FALSE(is_retryable(priv->got.failure));
  EXPECT_NE(priv->got_detail.find("10.1.2.3"), std::string::npos) << priv->got_detail;
  // 10.1.2.3 is dropped, the loopback address left is the one connected to.
  EXPECT_EQ(mixed->got.status, 200) << mixed->got_detail;
}

TEST_F(ResolverTest, LookupsPastTheBoundWaitTheirTurn) {
  ClientOptions o = options();
  o.max_dns_queries = 1;
  // The one timeout applies to both lookups, and the DNS server answers on this test's loop:
  // at 20 ms a stall of the loaded machine timed out good.test too, its answer unread. 300 ms
  // keeps the black hole's turn short and makes that stall an unlikely length.
  o.dns_timeout_ms = 300;
  make_client(o);
  auto bad = submit("q.blackhole.test");
  auto good = submit("good.test");
  EXPECT_EQ(client_->stats().dns_queued, 1u);
  run_until([&] { return dns_->seen("q.blackhole.test") > 0; });
  EXPECT_EQ(dns_->seen("good.test"), 0) << "asked before the first lookup ended";
  EXPECT_EQ(client_->stats().dns_queued, 1u);
  run_until([&] { return bad->done && good->done; });
  EXPECT_EQ(bad->got.failure, Failure::kDnsFailure);
  EXPECT_EQ(good->got.status, 200) << good->got_detail;
}

TEST_F(ResolverTest, IpLiteralsSkipDns) {
  make_client(options());
  auto r = submit("127.0.0.1");
  run_until([&] { return r->done; });
  EXPECT_EQ(r->got.status, 200) << r->got_detail;
  EXPECT_EQ(dns_->queries(), 0);
}

TEST_F(ResolverTest, IdleOriginsAreEvicted) {
  ClientOptions o = options();
  o.idle_timeout_ms = 1;  // the connection closes once idle, then the origin is idle
  o.idle_origin_ms = 1;
  make_client(o);
  auto good = submit("good.test");
  auto nx = submit("missing.test");  // an origin whose lookup failed is idle at once
  run_until([&] { return good->done && nx->done; });
  EXPECT_EQ(good->got.status, 200) << good->got_detail;
  run_until([&] { return client_->stats().origins == 0; });
  EXPECT_EQ(client_->stats().origins_evicted, 2u);
  // An evicted origin comes back on the next request, resolving again.
  const int asked = dns_->seen("good.test");
  auto again = submit("good.test");
  run_until([&] { return again->done; });
  EXPECT_EQ(again->got.status, 200) << again->got_detail;
  EXPECT_GT(dns_->seen("good.test"), asked);
}

TEST_F(ResolverTest, BadServerListIsRefusedAtCreate) {
  ClientOptions o = options();
  o.dns_servers = "not an address";
  auto c = Client::create(*streams_, *timers_, o);
  EXPECT_FALSE(c.has_value());
}

}  // namespace
}  // namespace fanout::transport
