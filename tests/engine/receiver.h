// A webhook receiver for engine tests: transport::HttpServer on its own thread and loop, on
// 127.0.0.1 port 0, answering each request through a script and recording what arrived.
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

#include "transport/http_server.h"
#include "transport/stream.h"

namespace fanout::testing {

struct Received {
  std::string path;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

class Receiver final : public transport::HttpRequestHandler {
 public:
  // Decides the status for a request (called on the receiver's thread); 0 means never answer.
  using Script = std::function<int(const Received&, std::size_t index)>;

  explicit Receiver(Script script) : script_(std::move(script)) {
    std::atomic<int> ready{0};
    thread_ = std::thread([this, &ready] {
      uv_loop_init(&loop_);
      streams_ = std::make_unique<transport::StreamLoop>(&loop_);
      auto s = transport::HttpServer::create(*streams_, {}, this);
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
              r->streams_->close();
            },
            self);
      });
      stop_.data = this;
      ready.store(1);
      uv_run(&loop_, UV_RUN_DEFAULT);
      server_.reset();
      loop_closed_ = uv_loop_close(&loop_);
    });
    while (ready.load() == 0) std::this_thread::yield();
  }

  ~Receiver() { stop(); }

  void stop() {
    if (!thread_.joinable()) return;
    if (server_) uv_async_send(&stop_);
    thread_.join();
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] int loop_close_result() const { return loop_closed_; }
  [[nodiscard]] std::vector<Received> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock(mu_);
    return received_.size();
  }
  // Blocks until `n` requests arrived; false after 60 s (a failure, not a timing assertion).
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return received_.size() >= n; });
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
      index = received_.size();
      received_.push_back(r);
    }
    cv_.notify_all();
    const int status = script_(r, index);
    if (status != 0) responder.respond(status, {}, "ok");
  }

 private:
  Script script_;
  std::thread thread_;
  uv_loop_t loop_{};
  uv_async_t stop_{};
  std::unique_ptr<transport::StreamLoop> streams_;
  std::unique_ptr<transport::HttpServer> server_;
  std::uint16_t port_ = 0;
  int loop_closed_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> received_;
};

}  // namespace fanout::testing
