// Delivery rules of docs/webhook-contract.md §4 and §5 checked at the engine, against real
// receivers and a DNS server of the test's own (tests/transport/dns_server.h on its own thread):
// the address guard with host names, DNS and TLS failures retried until exhausted with every
// attempt numbered, retry_429, and SNI (nginx chooses its certificate by the name the engine
// sends).
#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fanout/engine.h"
#include "tests/support/collector.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"
#include "tests/transport/dns_server.h"
#include "tests/transport/spawn_on_loop.h"
#include "tests/transport/test_peers.h"
#include "transport/tls.h"

namespace fanout {
namespace {

using fanout::testing::Collector;
using fanout::testing::Received;
using fanout::testing::Receiver;

// A DnsServer on a thread and loop of its own, configured by `setup` before it serves.
// Its counters are read after stop() (the thread is joined then).
class DnsThread {
 public:
  explicit DnsThread(const std::function<void(fanout::testing::DnsServer&)>& setup) {
    std::atomic<bool> ready{false};
    thread_ = std::thread([this, &setup, &ready] {
      uv_loop_init(&loop_);
      server_ = std::make_unique<fanout::testing::DnsServer>(&loop_);
      setup(*server_);
      address_ = server_->address();
      uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
        auto* self = static_cast<DnsThread*>(a->data);
        self->server_->close();
        uv_close(reinterpret_cast<uv_handle_t*>(&self->stop_), nullptr);
      });
      stop_.data = this;
      ready.store(true);
      uv_run(&loop_, UV_RUN_DEFAULT);
      uv_loop_close(&loop_);
    });
    while (!ready.load()) std::this_thread::yield();
  }
  ~DnsThread() { stop(); }
  DnsThread(const DnsThread&) = delete;
  DnsThread& operator=(const DnsThread&) = delete;

  [[nodiscard]] const std::string& address() const { return address_; }
  void stop() {
    if (!thread_.joinable()) return;
    uv_async_send(&stop_);
    thread_.join();
  }
  // After stop().
  [[nodiscard]] int seen(const std::string& name) const { return server_->seen(name); }

 private:
  std::thread thread_;
  uv_loop_t loop_{};
  uv_async_t stop_{};
  std::unique_ptr<fanout::testing::DnsServer> server_;
  std::string address_;
};

std::string event(const std::string& id) {
  return fanout::test_support::event_json(42, id);
}

// Milliseconds of backoff; no allow-list unless a test adds one.
EngineOptions options(const std::string& dns_servers) {
  EngineOptions o;
  o.workers = 1;
  o.insecure = true;
  o.dns_servers = dns_servers;
  o.retry.base_ms = 1;
  o.retry.factor = 2;
  o.retry.jitter = 0;
  return o;
}

// A CA (ca.pem) and leaf certificates signed by it for the names given (name.pem, name.key).
bool make_pki(const fanout::testing::ScratchDir& dir,
              const std::vector<std::pair<std::string, std::string>>& leaves) {
  if (!fanout::testing::make_test_pki(dir)) return false;
  const std::string d = dir.path();
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  for (const auto& [name, san] : leaves) {
    dir.write(name + ".ext", "subjectAltName=" + san + "\n");
    if (fanout::testing::ScratchDir::run("openssl req " + key + " -keyout " + d + "/" + name +
                                         ".key -out " + d + "/" + name +
                                         ".csr -subj /CN=" + name) != 0 ||
        fanout::testing::ScratchDir::run("openssl x509 -req -in " + d + "/" + name + ".csr -CA " +
                                         d + "/ca.pem -CAkey " + d +
                                         "/ca.key -CAcreateserial -days 2 -out " + d + "/" + name +
                                         ".pem -extfile " + d + "/" + name + ".ext") != 0) {
      return false;
    }
  }
  return true;
}

std::shared_ptr<const transport::TlsContext> server_tls(const fanout::testing::ScratchDir& dir,
                                                        const std::string& name) {
  transport::TlsServerOptions o;
  o.cert_file = dir.file(name + ".pem");
  o.key_file = dir.file(name + ".key");
  auto ctx = transport::TlsContext::server(o);
  EXPECT_TRUE(ctx.has_value()) << ctx.error();
  return ctx ? *ctx : nullptr;
}

class DeliveryContractTest : public fanout::test_support::EngineFixture {
 protected:
  // Subscription 7 (organisation 42) to `url`, then starts the engine.
  void subscribe(const std::string& url) {
    EngineFixture::subscribe(7, 42, url);
    run();
  }
  // Publishes one event with a tag (so each retryable failure reports a RetryNote) and waits
  // for its outcome.
  Collector::Copy deliver_one(const std::string& id) {
    auto p = engine_->make_producer();
    PublishOptions po;
    po.tag = 99;
    EXPECT_EQ(p.publish(event(id), po).status, PublishStatus::kAccepted);
    EXPECT_TRUE(collector_.wait_for(1));
    const auto out = collector_.outcomes();
    return out.empty() ? Collector::Copy{} : out[0];
  }
  // Retried until exhausted: six attempts, a RetryNote after each of the first five numbered
  // 1..5, the outcome counting 6, and each failure of the kind expected.
  void expect_exhausted_with_numbered_attempts(const Collector::Copy& out,
                                               const std::string& failure) {
    EXPECT_EQ(out.kind, OutcomeKind::kExhausted) << out.last_failure;
    EXPECT_EQ(out.attempts, 6u);
    EXPECT_EQ(out.last_status, 0);
    EXPECT_NE(out.last_failure.find(failure), std::string::npos) << out.last_failure;
    const auto notes = collector_.retries();
    ASSERT_EQ(notes.size(), 5u);
    for (std::size_t i = 0; i < notes.size(); ++i) {
      EXPECT_EQ(notes[i].attempts, i + 1) << "attempt numbers in order, none skipped";
      EXPECT_EQ(notes[i].event_id, out.event_id);
    }
    const EngineStats st = engine_->stats();
    EXPECT_EQ(st.attempts, 6u);
    EXPECT_EQ(st.attempts_failed, 6u);
  }
};

// --- The address guard with host names (contract §5) -------------------------------------------

TEST_F(DeliveryContractTest, NamesResolvingToPrivateOrLoopbackAddressesAreRefused) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  DnsThread dns([](fanout::testing::DnsServer& s) {
    s.add("loopback.test", {"127.0.0.1"});
    s.add("private.test", {"10.1.2.3"});
  });
  create(options(dns.address()));  // no allow-list
  routing::SubscriptionSpec spec;
  spec.org_id = 42;
  spec.url = "http://loopback.test:" + std::to_string(rx.port()) + "/hook";
  spec.event_type = "business_updated";
  ASSERT_TRUE(engine_->upsert(7, spec).has_value());
  spec.url = "http://private.test:" + std::to_string(rx.port()) + "/hook";
  spec.event_type = "lead_received";
  ASSERT_TRUE(engine_->upsert(8, spec).has_value());
  ASSERT_TRUE(engine_->start().has_value());
  {
    auto p = engine_->make_producer();  // a producer must not outlive its engine
    ASSERT_EQ(p.publish(event("to-loopback")).status, PublishStatus::kAccepted);
    ASSERT_EQ(
        p.publish(R"({"id":"to-private","org_id":42,"type":"lead_received","payload":{}})").status,
        PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(2));
  for (const auto& out : collector_.outcomes()) {
    SCOPED_TRACE(out.event_id);
    // Refused by the guard after resolution: rejected, never retried, nothing sent.
    EXPECT_EQ(out.kind, OutcomeKind::kRejected);
    EXPECT_EQ(out.attempts, 1u);
    EXPECT_NE(out.last_failure.find("address refused"), std::string::npos) << out.last_failure;
  }
  EXPECT_EQ(rx.count(), 0u);
  EXPECT_TRUE(engine_->stop(std::chrono::seconds(10)).empty());
  engine_.reset();
  dns.stop();
  EXPECT_GE(dns.seen("loopback.test"), 1) << "refused after resolving the name, not before";
  EXPECT_GE(dns.seen("private.test"), 1);
}

TEST_F(DeliveryContractTest, AnAllowedNameIsDeliveredToTheAddressItWasCheckedAt) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  // Two addresses: 10.1.2.3 is refused by the guard, 127.0.0.1 allowed. Whatever order the
  // resolver gives, the delivery must go to the checked, allowed one, from one lookup only (a
  // second lookup could answer something else: DNS rebinding).
  DnsThread dns([](fanout::testing::DnsServer& s) {
    s.add("mixed.test", {"10.1.2.3", "127.0.0.1"});
    s.add("once.test", {"127.0.0.1"});
  });
  EngineOptions o = options(dns.address());
  o.allow_subnets = {"127.0.0.1/32"};
  create(std::move(o));
  subscribe("http://mixed.test:" + std::to_string(rx.port()) + "/hook");
  const auto out = deliver_one("mixed");
  EXPECT_EQ(out.kind, OutcomeKind::kDelivered) << out.last_failure;
  EXPECT_EQ(out.attempts, 1u);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].headers.at("x-partoo-event-id"), "mixed");
  EXPECT_TRUE(engine_->stop(std::chrono::seconds(10)).empty());
  engine_.reset();
  dns.stop();
  // One lookup asks A and AAAA once each; another lookup would ask again.
  EXPECT_GE(dns.seen("mixed.test"), 1);
  EXPECT_LE(dns.seen("mixed.test"), 2);
}

// --- DNS and TLS failures are retried until exhausted (contract §4) ------------------------------

TEST_F(DeliveryContractTest, NxdomainIsRetriedUntilExhaustedEachAttemptNumbered) {
  DnsThread dns([](fanout::testing::DnsServer&) {});  // every name: NXDOMAIN
  create(options(dns.address()));
  subscribe("http://gone.test:8080/hook");
  expect_exhausted_with_numbered_attempts(deliver_one("nx"), "DNS");
  EXPECT_TRUE(engine_->stop(std::chrono::seconds(10)).empty());
  engine_.reset();
  dns.stop();
  EXPECT_GE(dns.seen("gone.test"), 6) << "asked again for each attempt (no negative cache)";
}

TEST_F(DeliveryContractTest, DnsTimeoutIsRetriedUntilExhaustedEachAttemptNumbered) {
  DnsThread dns([](fanout::testing::DnsServer& s) { s.black_hole_suffix("silent.test"); });
  EngineOptions o = options(dns.address());
  o.dns_timeout_ms = 20;  // the only wait: the server never answers
  create(std::move(o));
  subscribe("http://hooks.silent.test:8080/hook");
  expect_exhausted_with_numbered_attempts(deliver_one("dns-timeout"), "DNS");
}

class TlsContractTest : public DeliveryContractTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(make_pki(dir_, {{"hooks", "DNS:hooks.test"}})) << "openssl failed";
  }
  // https:// with verification: insecure off, 127.0.0.1 allowed, names from our DNS server.
  EngineOptions tls_options(const std::string& dns, bool trust_test_ca) {
    EngineOptions o = options(dns);
    o.insecure = false;
    o.allow_subnets = {"127.0.0.1/32"};
    if (trust_test_ca) o.ca_file = dir_.file("ca.pem");
    return o;
  }
  fanout::testing::ScratchDir dir_;
};

TEST_F(TlsContractTest, AVerifiedCertificateIsDelivered) {
  // The control for the two failures below: same receiver, same CA, the right name.
  Receiver rx([](const Received&, std::size_t) { return 200; }, Receiver::Keep::kEverything,
              {server_tls(dir_, "hooks"), {}});
  DnsThread dns([](fanout::testing::DnsServer& s) { s.add("hooks.test", {"127.0.0.1"}); });
  create(tls_options(dns.address(), true));
  subscribe("https://hooks.test:" + std::to_string(rx.port()) + "/hook");
  const auto out = deliver_one("tls-ok");
  EXPECT_EQ(out.kind, OutcomeKind::kDelivered) << out.last_failure;
  EXPECT_EQ(out.attempts, 1u);
  EXPECT_EQ(rx.count(), 1u);
}

TEST_F(TlsContractTest, UnknownCaIsRetriedUntilExhaustedEachAttemptNumbered) {
  Receiver rx([](const Received&, std::size_t) { return 200; }, Receiver::Keep::kEverything,
              {server_tls(dir_, "hooks"), {}});
  DnsThread dns([](fanout::testing::DnsServer& s) { s.add("hooks.test", {"127.0.0.1"}); });
  create(tls_options(dns.address(), false));  // the test CA is not trusted
  subscribe("https://hooks.test:" + std::to_string(rx.port()) + "/hook");
  expect_exhausted_with_numbered_attempts(deliver_one("tls-unknown-ca"), "TLS");
  EXPECT_EQ(rx.count(), 0u) << "no request over an unverified connection";
}

TEST_F(TlsContractTest, WrongHostNameIsRetriedUntilExhaustedEachAttemptNumbered) {
  // A certificate from the trusted CA, for wrong.example only.
  Receiver rx([](const Received&, std::size_t) { return 200; }, Receiver::Keep::kEverything,
              {server_tls(dir_, "wrong"), {}});
  DnsThread dns([](fanout::testing::DnsServer& s) { s.add("hooks.test", {"127.0.0.1"}); });
  create(tls_options(dns.address(), true));
  subscribe("https://hooks.test:" + std::to_string(rx.port()) + "/hook");
  expect_exhausted_with_numbered_attempts(deliver_one("tls-wrong-name"), "TLS");
  EXPECT_EQ(rx.count(), 0u) << "no request over an unverified connection";
}

// SNI (contract §5) with a peer nobody here wrote: nginx serves two names on one port, its
// default server with the wrong.example certificate and `hooks.test` with the right one, and
// picks by the SNI the client sent. Without SNI the engine would get wrong.example's and fail;
// the hooks.test server also checks $ssl_server_name itself.
TEST_F(TlsContractTest, SniIsSentAndSelectsTheReceiversCertificate) {
  if (!fanout::testing::have_program("nginx")) {
    if (std::getenv("CI") != nullptr) FAIL() << "missing test peer nginx (CI is set)";
    GTEST_SKIP() << "missing test peer nginx";
  }
  const std::string d = dir_.path();
  fanout::testing::Child nginx;
  std::uint16_t port = 0;
  // nginx cannot listen on port 0: a candidate port, then its own listening socket (read from
  // /proc) proves it got it; one that lost the port to another process exits and is retried.
  for (int tries = 0; tries < 5 && port == 0; ++tries) {
    const std::uint16_t candidate = fanout::testing::candidate_port();
    const std::string listen = "    listen 127.0.0.1:" + std::to_string(candidate) + " ssl http2";
    dir_.write("nginx.conf", "daemon off; master_process off; worker_processes 1; pid " + d +
                                 "/nginx.pid;\nerror_log " + d +
                                 "/error.log;\nevents { worker_connections 64; }\nhttp {\n"
                                 "  access_log off;\n  client_body_temp_path " +
                                 d + "/body; proxy_temp_path " + d + "/proxy; fastcgi_temp_path " +
                                 d + "/fcgi; uwsgi_temp_path " + d + "/uwsgi; scgi_temp_path " + d +
                                 "/scgi;\n"
                                 "  server {\n" +
                                 listen + " default_server;\n    ssl_certificate " + d +
                                 "/wrong.pem; ssl_certificate_key " + d +
                                 "/wrong.key;\n    location / { return 421; }\n  }\n"
                                 "  server {\n" +
                                 listen + ";\n    server_name hooks.test;\n    ssl_certificate " +
                                 d + "/hooks.pem; ssl_certificate_key " + d +
                                 "/hooks.key;\n"
                                 "    location / {\n"
                                 "      if ($ssl_server_name != \"hooks.test\") { return 421; }\n"
                                 "      return 200 \"sni=$ssl_server_name\";\n    }\n  }\n}\n");
    nginx = fanout::testing::Child(
        {"nginx", "-p", d, "-e", d + "/stderr.log", "-c", d + "/nginx.conf"});
    const auto ports = fanout::testing::wait_listening(nginx.pid());
    if (ports.size() == 1 && ports[0] == candidate) port = candidate;
  }
  ASSERT_NE(port, 0) << "nginx did not start";
  DnsThread dns([](fanout::testing::DnsServer& s) { s.add("hooks.test", {"127.0.0.1"}); });
  create(tls_options(dns.address(), true));
  subscribe("https://hooks.test:" + std::to_string(port) + "/hook");
  const auto out = deliver_one("sni");
  EXPECT_EQ(out.kind, OutcomeKind::kDelivered) << out.last_failure;
  EXPECT_EQ(out.last_status, 200);
  EXPECT_EQ(out.attempts, 1u);
}

// --- 429 (contract §4: not retried by default; retry_429 retries it) -----------------------------

TEST_F(DeliveryContractTest, TooManyRequestsIsRejectedByDefault) {
  Receiver rx([](const Received&, std::size_t) { return 429; });
  EngineOptions o = options("");
  o.allow_subnets = {"127.0.0.1/32"};
  create(std::move(o));
  subscribe(rx.url());
  const auto out = deliver_one("429-default");
  EXPECT_EQ(out.kind, OutcomeKind::kRejected);
  EXPECT_EQ(out.attempts, 1u);
  EXPECT_EQ(out.last_status, 429);
  EXPECT_EQ(rx.count(), 1u);
}

TEST_F(DeliveryContractTest, Retry429RetriesTooManyRequests) {
  // 429 twice, then 200: delivered on the third attempt; and 429 every time: exhausted after 6.
  Receiver rx([](const Received& r, std::size_t) {
    const std::string& id = r.headers.at("x-partoo-event-id");
    return id == "429-then-ok" && r.headers.at("x-partoo-attempt") == "3" ? 200 : 429;
  });
  EngineOptions o = options("");
  o.allow_subnets = {"127.0.0.1/32"};
  o.retry.retry_429 = true;
  create(std::move(o));
  subscribe(rx.url());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("429-then-ok")).status, PublishStatus::kAccepted);
  ASSERT_EQ(p.publish(event("429-always")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(2));
  for (const auto& out : collector_.outcomes()) {
    if (out.event_id == "429-then-ok") {
      EXPECT_EQ(out.kind, OutcomeKind::kDelivered);
      EXPECT_EQ(out.attempts, 3u);
    } else {
      EXPECT_EQ(out.kind, OutcomeKind::kExhausted);
      EXPECT_EQ(out.attempts, 6u);
      EXPECT_EQ(out.last_status, 429);
    }
  }
  EXPECT_EQ(rx.count(), 9u);
}

}  // namespace
}  // namespace fanout
