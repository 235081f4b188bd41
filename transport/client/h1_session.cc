// HTTP/1.1 client session: one request at a time on a kept-alive connection; responses parsed
// by llhttp (Content-Length, chunked, or read until close); `Connection: close` honoured.
#include <algorithm>
#include <cassert>

#include "transport/client/client_internal.h"

namespace fanout::transport {

class ClientH1Session final : public ClientSession {
 public:
  explicit ClientH1Session(ClientConnection& conn) : conn_(conn) {
    llhttp_settings_init(&settings_);
    settings_.on_headers_complete = on_headers_complete;
    settings_.on_body = on_body;
    settings_.on_message_complete = on_message_complete;
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
  }

  Protocol protocol() const noexcept override { return Protocol::kHttp1; }
  void start() override {}

  void submit(Request& r) override {
    assert(current_ == nullptr);
    const Origin& o = conn_.origin();
    head_.clear();
    head_.append("POST ").append(r.target).append(" HTTP/1.1\r\nHost: ").append(o.authority());
    head_.append("\r\nUser-Agent: ").append(conn_.client().options().user_agent);
    head_.append("\r\nContent-Type: ").append(r.content_type);
    head_.append("\r\nContent-Length: ").append(std::to_string(r.body.size()));
    for (const HeaderView& h : r.headers)
      head_.append("\r\n").append(h.name).append(": ").append(h.value);
    head_.append("\r\n\r\n");
    current_ = &r;
    Stream* stream = conn_.stream();
    stream->write(head_.data(), head_.size());
    stream->write(r.body.data(), r.body.size());
    r.sent_ = true;
    r.sent_ns_ = ClockScope::now_ns();
    r.timer_.set_callback(
        [](TimerEntry&, void* data) noexcept {
          auto* req = static_cast<Request*>(data);
          req->conn_->cancel(*req, Failure::kResponseTimeout);
        },
        &r);
    conn_.client().timers_.schedule_after(r.timer_, conn_.client().options().response_timeout_ms);
  }

  void on_data(const std::uint8_t* data, std::size_t len) override {
    if (dead_) return;
    if (current_ == nullptr) {
      conn_.abort(Failure::kProtocolError, "data from the server with no request outstanding");
      return;
    }
    const llhttp_errno_t err = llhttp_execute(&parser_, reinterpret_cast<const char*>(data), len);
    if (err != HPE_OK && !dead_) {
      const std::string why =
          std::string(llhttp_errno_name(err)) + ": " +
          (llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : "");
      dead_ = true;
      conn_.abort(Failure::kProtocolError, why);
    }
  }

  void on_connection_lost(Failure f, std::string_view detail) override {
    Request* r = current_;
    if (r != nullptr && !dead_ && llhttp_message_needs_eof(&parser_) != 0) {
      // A body delimited by the end of the connection: the close completes the response.
      if (llhttp_finish(&parser_) == HPE_OK && current_ == nullptr) {
        dead_ = true;
        return;
      }
    }
    dead_ = true;
    r = std::exchange(current_, nullptr);
    if (r == nullptr) return;
    conn_.client().timers_.cancel(r->timer_);
    r->failure_ = f;
    r->detail_ = std::string(detail);
    Client::finish(*r);
  }

  void cancel(Request& r, Failure f) override {
    assert(current_ == &r);
    current_ = nullptr;
    conn_.client().timers_.cancel(r.timer_);
    // HTTP/1.1 cannot abandon one response and keep the connection: close it.
    dead_ = true;
    conn_.abort(f, to_string(f));
    conn_.client().settle(r, f);
  }

  std::size_t capacity() const noexcept override { return 1; }
  std::size_t active() const noexcept override { return current_ != nullptr ? 1 : 0; }
  bool accepting() const noexcept override { return keep_alive_ && !dead_; }

 private:
  static ClientH1Session* self(llhttp_t* p) { return static_cast<ClientH1Session*>(p->data); }

  static int on_headers_complete(llhttp_t* p) {
    ClientH1Session* s = self(p);
    if (p->status_code < 200) return 0;  // 1xx: the final response follows
    if (s->current_ != nullptr) {
      s->current_->status_ = p->status_code;
      // The same span again bounds the body (see ClientH2Session).
      s->conn_.client().timers_.schedule_after(s->current_->timer_,
                                               s->conn_.client().options().response_timeout_ms);
    }
    return 0;
  }

  static int on_body(llhttp_t* p, const char* at, std::size_t len) {
    ClientH1Session* s = self(p);
    if (s->current_ == nullptr) return 0;
    std::string& b = s->current_->body_excerpt_;
    const std::size_t cap = s->current_->max_body_excerpt;
    if (b.size() < cap) b.append(at, std::min(len, cap - b.size()));
    return 0;
  }

  static int on_message_complete(llhttp_t* p) {
    ClientH1Session* s = self(p);
    if (p->status_code < 200) return 0;
    Request* r = std::exchange(s->current_, nullptr);
    s->keep_alive_ = llhttp_should_keep_alive(p) != 0;
    if (r == nullptr) return 0;
    s->conn_.client().timers_.cancel(r->timer_);
    r->failure_ = Failure::kNone;
    s->conn_.request_done();
    Client::finish(*r);
    // One response per request: anything after it is a protocol error (llhttp keeps parsing).
    return 0;
  }

  ClientConnection& conn_;
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  Request* current_ = nullptr;
  bool keep_alive_ = true;
  bool dead_ = false;
  std::string head_;
};

std::unique_ptr<ClientSession> make_h1_session(ClientConnection& c) {
  return std::make_unique<ClientH1Session>(c);
}

}  // namespace fanout::transport
