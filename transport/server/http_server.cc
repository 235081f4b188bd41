#include "transport/server/http_server.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "transport/server/http_server_internal.h"

namespace fanout::transport {

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// How long an HTTP/1.1 connection the server decided to close keeps reading (and discarding)
// after its last answer, waiting for the client to close first. Closing a socket with unread
// input makes the kernel send RST, which can destroy the answer (a 413, say) before the
// client reads it: the "lingering close" of Apache and nginx.
constexpr std::uint64_t kLingerMs = 2000;

}  // namespace

std::string_view to_string(HttpVersion v) noexcept {
  return v == HttpVersion::kHttp2 ? "h2" : "http/1.1";
}

std::string_view HttpRequest::header(std::string_view name) const noexcept {
  return http_server_detail::find_header(headers, name);
}

// --- Connection ----------------------------------------------------------------------------------

void HttpServer::Connection::on_stream_open(Stream& stream) {
  stream_ = &stream;
  if (server_.stopping_) {
    close_now();
    return;
  }
  if (stream.is_tls()) start(stream.alpn() == "h2" ? HttpVersion::kHttp2 : HttpVersion::kHttp1);
  update_timeouts();
}

void HttpServer::Connection::start(HttpVersion version) {
  session_ =
      version == HttpVersion::kHttp1 ? Session::make_http1(*this) : Session::make_http2(*this);
  if (!session_) {
    close_now();
    return;
  }
  session_->start();
}

void HttpServer::Connection::on_stream_data(Stream& /*stream*/, const std::uint8_t* data,
                                            std::size_t len) {
  if (closing_ || lingering_) return;
  receive(data, len);
  if (output_over_bound()) pause_input();
  update_timeouts();
}

void HttpServer::Connection::receive(const std::uint8_t* data, std::size_t len) {
  const Batch batch(*this);
  if (!session_) {
    // Cleartext: the HTTP/2 preface, or the first byte that differs from it, decides.
    const std::size_t have = detect_.size();
    const std::size_t n = std::min(len, kPreface.size() - have);
    const bool match = std::memcmp(data, kPreface.data() + have, n) == 0;
    if (match && have + n < kPreface.size()) {
      detect_.append(reinterpret_cast<const char*>(data), len);
      return;
    }
    start(match ? HttpVersion::kHttp2 : HttpVersion::kHttp1);
    if (closing_) return;
    if (!detect_.empty()) {
      const std::string buffered = std::move(detect_);
      detect_.clear();
      session_->feed(reinterpret_cast<const std::uint8_t*>(buffered.data()), buffered.size());
      if (closing_) return;
    }
  }
  session_->feed(data, len);
}

void HttpServer::Connection::on_stream_drained(Stream& /*stream*/) {
  if (close_when_flushed_) {
    close_when_flushed_ = false;
    flushed_for_close();
    return;
  }
  if (session_ && !closing_) session_->on_drained();
  if (read_paused_ && !closing_ && pending_output() == 0) {
    read_paused_ = false;
    {
      const Batch batch(*this);
      if (session_) session_->resume_input();  // may stop again (then read_paused_ is set)
    }
    if (!read_paused_ && !closing_) stream_->resume_reading();
  }
  update_timeouts();
}

void HttpServer::Connection::on_stream_error(Stream& /*stream*/, StreamError /*error*/,
                                             std::string_view /*detail*/) {
  // Peer resets, EOF and TLS failures are ordinary for a server: nothing to report.
  closing_ = true;
}

void HttpServer::Connection::on_stream_closed(Stream& /*stream*/) {
  HttpServer& server = server_;
  const std::uint32_t slot = slot_;
  server.timeout_remove(kLingerTimeout, linger_node_);
  server.timeout_remove(kIdleTimeout, idle_node_);
  server.timeout_remove(kRequestTimeout, request_node_);
  server.timeout_remove(kWriteTimeout, write_node_);
  delete this;
  server.connection_gone(slot);
}

void HttpServer::Connection::drain() {
  if (closing_ || lingering_) return;
  if (!session_) {
    close_now();  // nothing received yet: idle
    return;
  }
  session_->drain();
  update_timeouts();
}

void HttpServer::Connection::update_timeouts() {
  bool idle = false;
  std::uint64_t request = 0;
  if (!closing_ && !lingering_ && !close_when_flushed_) {
    if (!session_) {
      idle = detect_.empty();  // accepted, or in the TLS handshake
      request = detect_.empty() ? 0 : 1;
    } else {
      idle = session_->idle() && pending_output() == 0;
      request = session_->request_in_progress();
    }
  }
  const HttpServerOptions& o = server_.options_;
  if (idle && o.idle_timeout_ms != 0) {
    if (!idle_node_.linked()) server_.timeout_add(kIdleTimeout, idle_node_);
  } else {
    server_.timeout_remove(kIdleTimeout, idle_node_);
  }
  if (request != 0 && o.request_timeout_ms != 0) {
    if (!request_node_.linked() || request_node_.key != request) {
      server_.timeout_remove(kRequestTimeout, request_node_);
      request_node_.key = request;
      server_.timeout_add(kRequestTimeout, request_node_);
    }
  } else {
    server_.timeout_remove(kRequestTimeout, request_node_);
  }
  // Output waiting for the client: closed unless it drains within write_timeout_ms. (Linked
  // once per wait, not per write: a connection that keeps some output pending the whole time
  // times out even while it drains slowly.)
  if (!closing_ && o.write_timeout_ms != 0 && pending_output() > 0) {
    if (!write_node_.linked()) server_.timeout_add(kWriteTimeout, write_node_);
  } else {
    server_.timeout_remove(kWriteTimeout, write_node_);
  }
}

void HttpServer::Connection::on_timeout(TimeoutKind kind, std::int32_t stream_id) {
  if (closing_) return;
  if (kind == kLingerTimeout) {
    close_now();
    return;
  }
  if (kind == kWriteTimeout) {
    ++server_.write_timeouts_;
    close_now();
    return;
  }
  if (!session_) {
    close_now();  // idle, or a partial HTTP/2 preface
    return;
  }
  {
    const Batch batch(*this);
    if (kind == kIdleTimeout) {
      // HTTP/2: GOAWAY(NO_ERROR), closed once written; HTTP/1.1: closed now.
      (void)session_->goaway(0, GoawayMode::kImmediate);
    } else {
      session_->on_request_timeout(stream_id);
    }
  }
  update_timeouts();
}

// --- HttpResponder -------------------------------------------------------------------------------

bool HttpResponder::respond(int status, std::span<const HttpHeaderView> headers,
                            std::string_view body) const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  const bool ok = c->session_->respond(id_, status, headers, body);
  c->update_timeouts();
  return ok;
}

bool HttpResponder::reset(std::uint32_t h2_error_code) const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  const bool ok = c->session_->reset(id_, h2_error_code);
  c->update_timeouts();
  return ok;
}

bool HttpResponder::close_connection() const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_) return false;
  c->close_now();
  return true;
}

bool HttpResponder::goaway(GoawayMode mode) const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  const bool ok = c->session_->goaway(id_, mode);
  c->update_timeouts();
  return ok;
}

bool HttpResponder::pending() const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  return c->session_->pending(id_);
}

// --- HttpServer ----------------------------------------------------------------------------------

HttpServer::HttpServer(StreamLoop& loop, HttpServerOptions options, HttpRequestHandler* handler)
    : loop_(loop), options_(std::move(options)), handler_(handler) {}

HttpServer::~HttpServer() {
  assert(listener_closed_ && timer_closed_ && live_connections_ == 0 &&
         "HttpServer freed before its close callback");
}

tl::expected<std::unique_ptr<HttpServer>, std::string> HttpServer::create(
    StreamLoop& loop, HttpServerOptions options, HttpRequestHandler* handler) {
  sockaddr_storage addr{};
  const std::string where = options.host + ":" + std::to_string(options.port);
  if (uv_ip4_addr(options.host.c_str(), options.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(options.host.c_str(), options.port, reinterpret_cast<sockaddr_in6*>(&addr)) !=
          0) {
    return tl::unexpected("listen " + where + ": not a numeric IP address");
  }
  if (options.tls && !options.tls->is_server()) {
    return tl::unexpected("listen " + where + ": the TLS context is not a server context");
  }
  std::unique_ptr<HttpServer> server(new HttpServer(loop, std::move(options), handler));
  auto* tcp = new uv_tcp_t;
  uv_tcp_init(loop.uv(), tcp);
  tcp->data = server.get();
  server->listener_ = tcp;
  server->listener_closed_ = false;
  int rc = uv_tcp_bind(tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp), server->options_.backlog, on_connection);
  if (rc != 0) {
    // The handle outlives the server: its close callback frees it on the next loop run.
    tcp->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), on_listener_closed);
    server->listener_ = nullptr;
    server->listener_closed_ = true;
    return tl::unexpected("listen " + where + ": " + uv_strerror(rc));
  }
  server->timer_ = new uv_timer_t;
  uv_timer_init(loop.uv(), server->timer_);
  server->timer_->data = server.get();
  uv_unref(reinterpret_cast<uv_handle_t*>(server->timer_));
  server->timer_closed_ = false;
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&bound), &len);
  server->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  return server;
}

void HttpServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<HttpServer*>(server->data);
  if (self == nullptr || status < 0 || self->stopping_) return;
  self->accept_one();
}

void HttpServer::accept_one() {
  if (options_.max_connections != 0 && live_connections_ >= options_.max_connections) {
    // At the cap: accepted and closed at once, so the client learns now (a connection left in
    // the backlog would wait there, and fill it for everyone).
    auto* t = new uv_tcp_t;
    uv_tcp_init(loop_.uv(), t);
    (void)uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(t));
    uv_close(reinterpret_cast<uv_handle_t*>(t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    ++refused_;
    return;
  }
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  auto* conn = new Connection(*this, slot, slots_[slot].generation, next_connection_id_++);
  slots_[slot].conn = conn;
  ++live_connections_;
  auto st = Stream::accept(loop_, reinterpret_cast<uv_stream_t*>(listener_), options_.tls, conn);
  if (!st) {
    // No handler call follows a synchronous failure.
    delete conn;
    connection_gone(slot);
    return;
  }
  conn->stream_ = *st;
  conn->peer_ip_ = conn->stream_->peer_ip(conn->peer_text_, sizeof conn->peer_text_);
  conn->update_timeouts();  // idle from the accept (under TLS, the handshake counts as idle)
}

void HttpServer::stop_listening() {
  stopping_ = true;
  if (listener_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), on_listener_closed);
  listener_ = nullptr;
}

void HttpServer::on_listener_closed(uv_handle_t* handle) {
  auto* self = static_cast<HttpServer*>(handle->data);
  delete reinterpret_cast<uv_tcp_t*>(handle);
  if (self == nullptr) return;
  self->listener_closed_ = true;
  self->maybe_finished();
}

void HttpServer::connection_gone(std::uint32_t slot) {
  slots_[slot].conn = nullptr;
  ++slots_[slot].generation;
  free_slots_.push_back(slot);
  --live_connections_;
  maybe_finished();
}

std::uint64_t HttpServer::timeout_ms(TimeoutKind kind) const noexcept {
  switch (kind) {
    case kLingerTimeout:
      return kLingerMs;
    case kIdleTimeout:
      return options_.idle_timeout_ms;
    case kWriteTimeout:
      return options_.write_timeout_ms;
    default:
      return options_.request_timeout_ms;
  }
}

void HttpServer::timeout_add(TimeoutKind kind, TimeoutNode& node) {
  assert(!node.linked());
  const std::uint64_t now = uv_now(loop_.uv());
  node.deadline = now + timeout_ms(kind);
  timeouts_[kind].push_back(&node);
  // The timer callback re-arms itself for whatever it leaves queued.
  if (timer_ != nullptr && !in_timer_ && node.deadline < timer_due_) {
    timer_due_ = node.deadline;
    uv_timer_start(timer_, on_timer, node.deadline - now, 0);
  }
}

void HttpServer::on_timer(uv_timer_t* timer) {
  auto* self = static_cast<HttpServer*>(timer->data);
  const std::uint64_t now = uv_now(self->loop_.uv());
  self->in_timer_ = true;
  self->timer_due_ = UINT64_MAX;
  for (int k = 0; k < kTimeoutKinds; ++k) {
    const auto kind = static_cast<TimeoutKind>(k);
    while (TimeoutNode* n = self->timeouts_[kind].front()) {
      if (n->deadline > now) break;
      self->timeout_remove(kind, *n);
      n->conn->on_timeout(kind, n->stream_id);
    }
  }
  self->in_timer_ = false;
  std::uint64_t due = UINT64_MAX;
  for (const TimeoutList& list : self->timeouts_) {
    if (!list.empty()) due = std::min(due, list.front()->deadline);
  }
  if (due != UINT64_MAX && self->timer_ != nullptr) {
    // Entries added by the callbacks above are due later than `now`.
    self->timer_due_ = due;
    uv_timer_start(timer, on_timer, due - now, 0);
  }
}

void HttpServer::on_timer_closed(uv_handle_t* handle) {
  auto* self = static_cast<HttpServer*>(handle->data);
  delete reinterpret_cast<uv_timer_t*>(handle);
  self->timer_closed_ = true;
  self->maybe_finished();
}

// The close callback runs once the listener, every connection and the timer are closed; each
// callback given to drain() or close() runs at most once.
void HttpServer::maybe_finished() {
  if (!stopping_ || !listener_closed_ || live_connections_ != 0) return;
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), on_timer_closed);
    timer_ = nullptr;
    return;
  }
  if (!timer_closed_) return;
  finished_ = true;
  const CloseCallback cb = close_callback_;
  close_callback_ = nullptr;
  if (cb != nullptr) cb(this, close_data_);
}

HttpServer::Connection* HttpServer::find(std::uint32_t slot,
                                         std::uint32_t generation) const noexcept {
  if (slot >= slots_.size() || slots_[slot].generation != generation) return nullptr;
  return slots_[slot].conn;
}

void HttpServer::drain(CloseCallback callback, void* data) {
  stop(callback, data, &Connection::drain);
}

void HttpServer::close(CloseCallback callback, void* data) {
  stop(callback, data, &Connection::close_now);
}

void HttpServer::stop(CloseCallback callback, void* data, void (Connection::*each)()) {
  close_callback_ = callback;
  close_data_ = data;
  stop_listening();
  for (const Slot& s : slots_) {
    if (s.conn != nullptr) (s.conn->*each)();
  }
  maybe_finished();
}

}  // namespace fanout::transport
