// The HttpServer tests' fixture: a real loop, a handler that records what it saw, a raw TCP
// client for byte-exact exchanges, and curl/nghttp/h2load children on the same loop.
// Shared by http_server_test.cc (protocol behaviour) and http_server_limits_test.cc (what one
// client may hold: output, connections, early refusal).
#pragma once

#include "transport/server/http_server.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/peers.h"
#include "tests/transport/spawn_on_loop.h"
#include "transport/stream.h"
#include "transport/tls.h"

namespace fanout::transport::testing_fixture {

using fanout::testing::have_program;
using fanout::testing::LoopChild;
using fanout::testing::number_after;
using fanout::testing::TempDir;

// A request as the handler saw it, copied out of the callback.
struct Seen {
  std::string method, target, authority, body;
  std::vector<std::pair<std::string, std::string>> headers;
  HttpVersion version = HttpVersion::kHttp1;
  bool tls = false;
  std::uint64_t connection_id = 0;
  std::uint64_t sequence = 0;

  [[nodiscard]] std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n.size() == name.size() &&
          std::equal(n.begin(), n.end(), name.begin(),
                     [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
        return v;
      }
    }
    return {};
  }
};

inline std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// True when `r` holds a complete HTTP/1.1 answer carrying "connection: close" (after any
// earlier complete answers): what a real client waits for before closing its side.
inline bool has_final_answer(const std::string& r) {
  std::size_t pos = 0;
  while (pos < r.size()) {
    const std::size_t end = r.find("\r\n\r\n", pos);
    if (end == std::string::npos) return false;
    const std::string head = r.substr(pos, end - pos);
    const std::size_t cl = head.find("content-length: ");
    const std::size_t len = cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 16));
    if (r.size() < end + 4 + len) return false;
    if (head.find("connection: close") != std::string::npos) return true;
    pos = end + 4 + len;
  }
  return false;
}

// A plain TCP client for byte-exact exchanges: writes `request` once connected, collects
// everything until the server closes. Like a real client, it shuts its sending side down once
// it has a complete answer that says "connection: close".
class RawClient {
 public:
  std::function<void(RawClient&)> on_data;

  void start(uv_loop_t* loop, std::uint16_t port, std::string request) {
    request_ = std::move(request);
    uv_tcp_init(loop, &tcp_);
    tcp_.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", port, &addr);
    connect_.data = this;
    uv_tcp_connect(&connect_, &tcp_, reinterpret_cast<const sockaddr*>(&addr), on_connect);
  }
  void send(const std::string& bytes) {
    auto* w = new WriteReq{{}, bytes};
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
    uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1,
             [](uv_write_t* r, int) { delete static_cast<WriteReq*>(r->data); });
  }
  void close() {
    if (closing_) return;
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
             [](uv_handle_t* h) { static_cast<RawClient*>(h->data)->closed_ = true; });
  }
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] bool saw_eof() const { return eof_; }
  [[nodiscard]] const std::string& received() const { return received_; }

 private:
  struct WriteReq {
    uv_write_t req;
    std::string bytes;
  };
  static void on_connect(uv_connect_t* req, int status) {
    auto* self = static_cast<RawClient*>(req->data);
    if (status != 0) {
      self->close();
      return;
    }
    self->connected_ = true;
    if (self->read_on_connect) self->start_reading();
    if (!self->request_.empty()) self->send(self->request_);
  }

 public:
  // false: the client does not read until start_reading() (a client that never reads).
  bool read_on_connect = true;
  [[nodiscard]] bool connected() const { return connected_; }
  void start_reading() {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp_),
        [](uv_handle_t*, std::size_t, uv_buf_t* b) {
          static char chunk[65536];
          *b = uv_buf_init(chunk, sizeof chunk);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* c = static_cast<RawClient*>(s->data);
          if (n > 0) {
            c->received_.append(b->base, static_cast<std::size_t>(n));
            if (c->on_data) c->on_data(*c);
            if (!c->shut_ && has_final_answer(c->received_)) {
              c->shut_ = true;
              uv_shutdown(&c->shutdown_, s, nullptr);
            }
          } else if (n < 0) {
            c->eof_ = true;
            c->close();
          }
        });
  }

 private:
  uv_tcp_t tcp_{};
  uv_connect_t connect_{};
  uv_shutdown_t shutdown_{};
  bool shut_ = false;
  std::string request_;
  std::string received_;
  bool closing_ = false;
  bool closed_ = false;
  bool eof_ = false;
  bool connected_ = false;
};

class HttpServerTest : public ::testing::Test, public HttpRequestHandler {
 protected:
  static void SetUpTestSuite() {
    for (const char* p : {"curl", "nghttp", "h2load", "openssl"}) {
      if (!have_program(p)) missing_ += std::string(p) + " ";
    }
  }

  void SetUp() override {
    if (!missing_.empty()) {
      FANOUT_MISSING_PEER(missing_);
    }
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    loop_ready_ = true;
    streams_ = std::make_unique<StreamLoop>(&loop_);
    ASSERT_FALSE(dir_.path().empty());
  }

  void TearDown() override {
    if (!loop_ready_) return;
    if (server_) stop_server(false);
    streams_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
    streams_.reset();
  }

  void on_request(const HttpRequest& r, HttpResponder responder) override {
    Seen s;
    s.method = r.method;
    s.target = r.target;
    s.authority = r.authority;
    s.body = r.body;
    for (const auto& h : r.headers) s.headers.emplace_back(h.name, h.value);
    s.version = r.version;
    s.tls = r.tls;
    s.connection_id = r.connection_id;
    s.sequence = r.sequence;
    seen_.push_back(std::move(s));
    if (handler_) {
      handler_(seen_.back(), responder);
      return;
    }
    // Default: echo the body, and say what arrived in headers.
    const std::string len = std::to_string(r.body.size());
    const HttpHeaderView headers[] = {{"x-echo-method", r.method}, {"x-echo-length", len}};
    EXPECT_TRUE(responder.respond(200, headers, r.body));
  }

  void start(HttpServerOptions options = {}) {
    auto s = HttpServer::create(*streams_, std::move(options), this);
    ASSERT_TRUE(s.has_value()) << s.error();
    server_ = std::move(*s);
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  void start_tls() {
    const std::string key = dir_.file("k.pem");
    const std::string cert = dir_.file("c.pem");
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + key +
        " -out " + cert +
        " -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto tls = TlsContext::server({cert, key});
    ASSERT_TRUE(tls.has_value()) << tls.error();
    HttpServerOptions o;
    o.tls = *tls;
    start(std::move(o));
  }

  std::string url(std::string_view path = "/", bool tls = false) const {
    return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
           std::string(path);
  }

  LoopChild& spawn(std::vector<std::string> argv) {
    children_.push_back(std::make_unique<LoopChild>());
    LoopChild& c = *children_.back();
    EXPECT_TRUE(c.start(&loop_, argv)) << c.error();
    return c;
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
  void run_children() {
    run_until([&] {
      return std::all_of(children_.begin(), children_.end(), [](auto& c) { return c->done(); });
    });
  }
  // drain() (graceful) or close(), then runs until the close callback.
  void stop_server(bool graceful) {
    bool closed = false;
    auto cb = [](HttpServer*, void* d) noexcept { *static_cast<bool*>(d) = true; };
    if (graceful) {
      server_->drain(cb, &closed);
    } else {
      server_->close(cb, &closed);
    }
    run_until([&] { return closed; });
    server_.reset();
  }

  // curl with a status/version line on stdout: "<code> <version>".
  LoopChild& curl(std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        "curl", "-sS", "-o", dir_.file("curl.out"), "-w", "%{http_code} %{http_version}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return spawn(std::move(argv));
  }

  static inline std::string missing_;
  uv_loop_t loop_{};
  bool loop_ready_ = false;
  std::unique_ptr<StreamLoop> streams_;
  std::unique_ptr<HttpServer> server_;
  std::uint16_t port_ = 0;
  TempDir dir_;
  std::vector<std::unique_ptr<LoopChild>> children_;
  std::vector<Seen> seen_;
  std::function<void(const Seen&, HttpResponder)> handler_;
};

}  // namespace fanout::transport::testing_fixture
