// A webhook receiver for engine tests: transport::HttpServer on its own thread and loop, on
// 127.0.0.1 port 0, answering each request through a script and recording what arrived.
//
// The script answers with an HTTP status, or with one of the actions below: never answer (a
// black hole), reset the stream, close the connection, or hold the request until the test calls
// release_held() (a delayed answer whose moment the test decides, without a clock).
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/server/http_server.h"
#include "transport/stream.h"

namespace fanout::testing {

struct Received {
  std::string path;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

// What the receiver did with one request: kept for every request, even in kAnswersOnly mode.
struct Answer {
  std::string event_id;  // X-Partoo-Event-Id
  std::string attempt;   // X-Partoo-Attempt
  int action = 0;        // the script's answer: a status or one of Receiver's actions
};

class Receiver final : public transport::HttpRequestHandler {
 public:
  // Script answers besides HTTP statuses.
  static constexpr int kNoAnswer = 0;          // a black hole: the request stays open
  static constexpr int kReset = -1;            // HTTP/2 RST_STREAM(INTERNAL_ERROR)
  static constexpr int kCloseConnection = -2;  // the connection closes at once
  static constexpr int kHold = -3;             // answered by release_held()

  // kEverything keeps each request whole (received()); kAnswersOnly keeps only answers(), for
  // load tests where copying every body and header would dominate.
  enum class Keep { kEverything, kAnswersOnly };

  // Decides the answer to a request (called on the receiver's thread).
  using Script = std::function<int(const Received&, std::size_t index)>;

  // Besides the script: TLS (an https:// receiver) and headers sent with every status answer
  // (a redirect's Location).
  struct Setup {
    std::shared_ptr<const transport::TlsContext> tls;
    std::vector<std::pair<std::string, std::string>> answer_headers;
  };

  explicit Receiver(Script script, Keep keep = Keep::kEverything, Setup setup = {})
      : script_(std::move(script)), keep_(keep), setup_(std::move(setup)) {
    for (const auto& [name, value] : setup_.answer_headers) {
      answer_headers_.push_back({name, value});
    }
    std::atomic<int> ready{0};
    thread_ = std::thread([this, &ready] {
      uv_loop_init(&loop_);
      streams_ = std::make_unique<transport::StreamLoop>(&loop_);
      transport::HttpServerOptions options;
      options.tls = setup_.tls;
      auto s = transport::HttpServer::create(*streams_, options, this);
      if (!s) {
        ready.store(-1);
        streams_->close();
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
        return;
      }
      server_ = std::move(*s);
      port_ = server_->port();
      uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
        auto* self = static_cast<Receiver*>(a->data);
        self->server_->close(
            [](transport::HttpServer*, void* d) noexcept {
              auto* r = static_cast<Receiver*>(d);
              uv_close(reinterpret_cast<uv_handle_t*>(&r->stop_), nullptr);
              uv_close(reinterpret_cast<uv_handle_t*>(&r->release_), nullptr);
              r->streams_->close();
            },
            self);
      });
      stop_.data = this;
      uv_async_init(&loop_, &release_,
                    [](uv_async_t* a) { static_cast<Receiver*>(a->data)->answer_held(); });
      release_.data = this;
      ready.store(1);
      uv_run(&loop_, UV_RUN_DEFAULT);
      server_.reset();
      loop_closed_ = uv_loop_close(&loop_);
    });
    while (ready.load() == 0) std::this_thread::yield();
  }

  ~Receiver() { stop(); }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  void stop() {
    if (!thread_.joinable()) return;
    if (server_) uv_async_send(&stop_);
    thread_.join();
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  [[nodiscard]] int loop_close_result() const { return loop_closed_; }
  // Every request, whole (empty in kAnswersOnly mode).
  [[nodiscard]] std::vector<Received> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  [[nodiscard]] std::vector<Answer> answers() const {
    std::lock_guard lock(mu_);
    return answers_;
  }
  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  // Blocks until `n` requests arrived; false after 60 s (a failure, not a timing assertion).
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return count_ >= n; });
  }
  // Any thread: answers every request held so far (kHold) with `status`, on the receiver's
  // thread. Requests held later wait for the next call.
  void release_held(int status) {
    {
      std::lock_guard lock(mu_);
      release_status_ = status;
    }
    uv_async_send(&release_);
  }

  void on_request(const transport::HttpRequest& request,
                  transport::HttpResponder responder) override {
    Received r;
    r.path = std::string(request.target);
    r.body = std::string(request.body);
    for (const auto& h : request.headers) {
      std::string name(h.name);
      for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
      r.headers[name] = std::string(h.value);
    }
    std::size_t index = 0;
    {
      std::lock_guard lock(mu_);
      index = count_;
    }
    const int action = script_(r, index);
    {
      std::lock_guard lock(mu_);
      ++count_;
      answers_.push_back({header_or_empty(r, "x-partoo-event-id"),
                          header_or_empty(r, "x-partoo-attempt"), action});
      if (keep_ == Keep::kEverything) received_.push_back(std::move(r));
    }
    cv_.notify_all();
    switch (action) {
      case kNoAnswer:
        break;
      case kReset:
        responder.reset();
        break;
      case kCloseConnection:
        responder.close_connection();
        break;
      case kHold:
        held_.push_back(responder);
        break;
      default:
        responder.respond(action, answer_headers_, "ok");
    }
  }

 private:
  static std::string header_or_empty(const Received& r, const std::string& name) {
    auto it = r.headers.find(name);
    return it == r.headers.end() ? std::string() : it->second;
  }
  void answer_held() {
    int status = 0;
    {
      std::lock_guard lock(mu_);
      status = release_status_;
    }
    for (const transport::HttpResponder& h : held_) h.respond(status, answer_headers_, "ok");
    held_.clear();
  }

  Script script_;
  Keep keep_;
  Setup setup_;
  std::vector<transport::HttpHeaderView> answer_headers_;  // views into setup_
  std::thread thread_;
  uv_loop_t loop_{};
  uv_async_t stop_{};
  uv_async_t release_{};
  std::unique_ptr<transport::StreamLoop> streams_;
  std::unique_ptr<transport::HttpServer> server_;
  std::uint16_t port_ = 0;
  int loop_closed_ = -1;
  std::vector<transport::HttpResponder> held_;  // receiver's thread only
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t count_ = 0;
  int release_status_ = 200;
  std::vector<Received> received_;
  std::vector<Answer> answers_;
};

}  // namespace fanout::testing
