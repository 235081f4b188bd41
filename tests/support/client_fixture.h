// The transport client's tests (tests/transport/client/): a request that records its response,
// and a fixture with a libuv loop, the loop's StreamLoop and LoopTimer, and a Client on them.
// A 30 s guard timer fails a test whose loop would otherwise never stop (a failure, never a
// timing assertion).
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/stream.h"

// Not fanout::testing: in a test inside namespace fanout, that name would hide ::testing.
namespace fanout::test_support {

// A request that records its response (views copied), counts on_response calls, and stops the
// loop when the last of a batch (`*remaining` reaching 0) completes.
struct RecordingRequest final : transport::Request {
  transport::Response got;
  std::string got_body;
  std::string got_detail;
  int calls = 0;
  bool done = false;
  int* remaining = nullptr;
  uv_loop_t* loop = nullptr;
  // What the request's views (target, body, headers) point at.
  std::string target_storage;
  std::string body_storage;
  std::vector<transport::HeaderView> header_storage;

  void on_response(const transport::Response& r) override {
    ++calls;
    got = r;
    got_body.assign(r.body);
    got_detail.assign(r.detail);
    got.body = got_body;
    got.detail = got_detail;
    done = true;
    if (--*remaining == 0) uv_stop(loop);
  }
};

using Requests = std::vector<std::unique_ptr<RecordingRequest>>;

// A test peer's listener: `server` (its data set to `owner`) listening on 127.0.0.1 at a port
// the kernel picks, which is returned (0 when binding or listening failed, also reported).
inline std::uint16_t listen_on_loopback(uv_loop_t* loop, uv_tcp_t* server, void* owner,
                                        uv_connection_cb on_connection) {
  uv_tcp_init(loop, server);
  server->data = owner;
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", 0, &a);
  const int bound = uv_tcp_bind(server, reinterpret_cast<const sockaddr*>(&a), 0);
  const int listening =
      bound == 0 ? uv_listen(reinterpret_cast<uv_stream_t*>(server), 64, on_connection) : bound;
  EXPECT_EQ(listening, 0) << uv_strerror(listening);
  int len = sizeof a;
  if (listening != 0 || uv_tcp_getsockname(server, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return 0;
  }
  return ntohs(a.sin_port);
}

class ClientLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    streams_ = std::make_unique<transport::StreamLoop>(&loop_);
    timers_ = std::make_unique<transport::LoopTimer>(&loop_);
    guard_.bind<&ClientLoopTest::on_guard>(this);
  }

  void TearDown() override {
    close_peers();
    if (client_) {
      bool closed = false;
      client_->close([](void* d) { *static_cast<bool*>(d) = true; }, &closed);
      while (!closed) uv_run(&loop_, UV_RUN_ONCE);
      client_.reset();
    }
    timers_->cancel(guard_);
    streams_->close();
    timers_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle leaked";
    free_peers();
  }

  // First in TearDown: close the handles the test's own peers keep on the loop (their hooks may
  // capture the test body's locals, so none may run once the body has returned).
  virtual void close_peers() {}
  // Last in TearDown, once the loop ran every close callback: free those peers.
  virtual void free_peers() {}

  // To 127.0.0.1 only (the address guard's allow-list), with generous timeouts.
  static transport::ClientOptions loopback_options() {
    transport::ClientOptions o;
    o.allow.push_back(*transport::Subnet::parse("127.0.0.1/32"));
    o.response_timeout_ms = 10'000;
    o.connect_timeout_ms = 5'000;
    return o;
  }

  void make_client(transport::ClientOptions o) {
    auto c = transport::Client::create(*streams_, *timers_, std::move(o));
    ASSERT_TRUE(c.has_value()) << c.error();
    client_ = std::move(*c);
  }

  // One request of a batch run by run_all() or run_loop().
  std::unique_ptr<RecordingRequest> make_request(bool tls, std::string_view host,
                                                 std::uint16_t port, std::string target,
                                                 std::string body) {
    auto r = std::make_unique<RecordingRequest>();
    r->tls = tls;
    r->host = host;
    r->port = port;
    r->target_storage = std::move(target);
    r->target = r->target_storage;
    r->body_storage = std::move(body);
    r->body = r->body_storage;
    r->loop = &loop_;
    r->remaining = &remaining_;
    return r;
  }

  // Submits every request and runs the loop until all completed.
  void run_all(Requests& reqs) {
    remaining_ = static_cast<int>(reqs.size());
    for (auto& r : reqs) client_->submit(*r);
    run_loop();
    for (auto& r : reqs) ASSERT_TRUE(r->done) << r->target_storage << " never completed";
  }

  // Runs the loop until it stops (the last request of a batch, or the 30 s guard).
  void run_loop() {
    timers_->schedule_after(guard_, 30'000);
    uv_run(&loop_, UV_RUN_DEFAULT);
    timers_->cancel(guard_);
  }

  void on_guard() noexcept {
    ADD_FAILURE() << "still running after 30 s";
    uv_stop(&loop_);
  }

  uv_loop_t loop_{};
  std::unique_ptr<transport::StreamLoop> streams_;
  std::unique_ptr<transport::LoopTimer> timers_;
  std::unique_ptr<transport::Client> client_;
  transport::TimerEntry guard_;
  int remaining_ = 0;
};

}  // namespace fanout::test_support
