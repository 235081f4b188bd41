#include "transport/client/client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "transport/client/client_internal.h"
#include "transport/tls.h"

namespace fanout::transport {

// --- Client -------------------------------------------------------------------------------------

void Client::submit(Request& r) {
  assert(r.where_ == Request::Where::kIdle && "a request is submitted again before it completed");
  r.submit_ns_ = ClockScope::now_ns();
  r.sent_ = false;
  r.requeues_ = 0;
  r.status_ = 0;
  r.status_in_block_ = false;
  r.stream_id_ = -1;
  r.body_offset_ = 0;
  r.new_connection_ = false;
  r.failure_ = Failure::kNone;
  r.detail_.clear();
  r.body_excerpt_.clear();
  if (closing_) {
    complete_later(r, Failure::kCancelled, "the client is closing");
    return;
  }
  if (!r.tls && !options_.insecure) {
    complete_later(r, Failure::kSchemeRefused, "http:// needs insecure mode");
    return;
  }
  auto it = origins_.find(r.host);
  if (it == origins_.end()) it = origins_.emplace(std::string(r.host), OriginSet{}).first;
  Origin* origin = nullptr;
  for (const auto& o : it->second) {
    if (o->tls() == r.tls && o->port() == r.port) origin = o.get();
  }
  if (origin == nullptr) {
    it->second.push_back(std::make_unique<Origin>(*this, r.tls, std::string(r.host), r.port));
    origin = it->second.back().get();
  }
  origin->submit(r);
}

void Client::cancel(Request& r) {
  switch (r.where_) {
    case Request::Where::kPending:
      r.origin_->cancel(r, Failure::kCancelled);
      break;
    case Request::Where::kInFlight:
      r.conn_->cancel(r, Failure::kCancelled);
      break;
    case Request::Where::kIdle:
    case Request::Where::kCompleting:
      break;
  }
}

void Client::complete_later(Request& r, Failure f, std::string detail) {
  r.failure_ = f;
  r.detail_ = std::move(detail);
  r.where_ = Request::Where::kCompleting;
  r.client_ = this;
  ++deferred_;
  r.timer_.set_callback(
      [](TimerEntry&, void* data) noexcept {
        auto* req = static_cast<Request*>(data);
        Client* c = req->client_;
        --c->deferred_;
        finish(*req);  // may free req
        c->maybe_done();
      },
      &r);
  timers_.schedule(r.timer_, timers_.now());
}

void Client::settle(Request& r, Failure f) {
  if (f == Failure::kResponseTimeout && r.status_ != 0) {
    // The headers came and the body stalled: the receiver answered; its body is abandoned.
    r.failure_ = Failure::kNone;
    r.detail_.clear();
    finish(r);
    return;
  }
  std::string detail =
      f == Failure::kResponseTimeout
          ? "no response within " + std::to_string(options_.response_timeout_ms) + " ms"
          : std::string(to_string(f));
  if (f == Failure::kCancelled) {
    complete_later(r, f, std::move(detail));  // never inside cancel()
    return;
  }
  r.failure_ = f;
  r.detail_ = std::move(detail);
  finish(r);
}

void Client::finish(Request& r) {
  const std::uint64_t now = ClockScope::now_ns();
  Response resp;
  resp.failure = r.failure_;
  resp.status = r.failure_ == Failure::kNone ? r.status_ : 0;
  resp.detail = r.detail_;
  resp.body = r.body_excerpt_;
  resp.protocol = r.protocol_;
  resp.new_connection = r.new_connection_;
  resp.requeues = r.requeues_;
  if (r.sent_ns_ >= r.submit_ns_ && r.sent_ns_ != 0) {
    resp.queued_us = (r.sent_ns_ - r.submit_ns_) / 1000;
    resp.response_us = r.status_ != 0 ? (now - r.sent_ns_) / 1000 : 0;
  }
  resp.total_us = (now - r.submit_ns_) / 1000;
  r.where_ = Request::Where::kIdle;
  r.conn_ = nullptr;
  r.origin_ = nullptr;
  r.sent_ns_ = 0;
  r.on_response(resp);  // may free or resubmit r: touch nothing after this
}

// --- Origin -------------------------------------------------------------------------------------

void Origin::submit(Request& r) {
  if (client_.timers_.armed(idle_timer_)) [[unlikely]] {
    client_.timers_.cancel(idle_timer_);
  }
  if (pending_.size() >= client_.options_.max_pending_per_origin) {
    client_.complete_later(
        r, Failure::kQueueFull,
        "the queue of " + authority_ + " holds " + std::to_string(pending_.size()) + " requests");
    return;
  }
  r.where_ = Request::Where::kPending;
  r.origin_ = this;
  pending_.push_back(&r);
  dispatch();
}

void Origin::cancel(Request& r, Failure f) {
  pending_.remove(&r);
  client_.complete_later(r, f, "cancelled while queued");
  maybe_idle();
}

void Origin::requeue(Request& r) {
  if (client_.closing_) {
    // Handed back by a connection the closing client aborted: nothing will send it again.
    r.failure_ = Failure::kCancelled;
    r.detail_ = "the client is closing";
    Client::finish(r);
    return;
  }
  if (r.requeues_ >= Request::kMaxRequeues) {
    // From the loop: requeue() may run inside submit() (stream ids exhausted).
    client_.complete_later(r, Failure::kRefusedBeforeProcessing,
                           "refused unprocessed " + std::to_string(r.requeues_ + 1) + " times");
    return;
  }
  ++r.requeues_;
  ++client_.requeued_;
  r.sent_ = false;
  r.sent_ns_ = 0;
  r.stream_id_ = -1;
  r.body_offset_ = 0;
  r.status_ = 0;
  r.status_in_block_ = false;
  r.body_excerpt_.clear();
  r.conn_ = nullptr;
  r.where_ = Request::Where::kPending;
  r.origin_ = this;
  pending_.push_front(&r);
}

void Origin::dispatch() {
  if (closing_) return;
  while (!pending_.empty()) {
    ClientConnection* c = list(ClientConnection::State::kReady).front();
    if (c == nullptr) break;
    c->submit(*pending_.pop_front());
  }
  if (pending_.empty()) return;
  const ClientOptions& o = client_.options_;
  // A connection still connecting is expected to take a full share of streams (HTTP/2) or one
  // request (HTTP/1.1); open more only when the pending requests exceed that.
  const bool expect_h2 = tls_ ? o.offer_h2 : o.cleartext_h2;
  const std::size_t share = expect_h2 ? o.max_streams_per_connection : 1;
  for (;;) {
    const std::size_t open = count(ClientConnection::State::kConnecting) +
                             count(ClientConnection::State::kReady) +
                             count(ClientConnection::State::kBusy);
    if (open >= o.max_connections_per_origin) return;
    if (pending_.size() <= count(ClientConnection::State::kConnecting) * share) return;
    if (!open_connection()) return;
  }
}

void Origin::move(ClientConnection* c, ClientConnection::State from, ClientConnection::State to) {
  if (from == to) return;
  IntrusiveList<ClientConnection>::erase(c);
  --counts_[static_cast<std::size_t>(from)];
  list(to).push_front(c);
  ++counts_[static_cast<std::size_t>(to)];
}

// --- ClientConnection ----------------------------------------------------------------------------

ClientConnection::ClientConnection(Client& client, Origin& origin)
    : client_(client), origin_(origin) {
  connect_timer_.bind<&ClientConnection::on_connect_timeout>(this);
  idle_timer_.bind<&ClientConnection::on_idle_timeout>(this);
}

ClientConnection::~ClientConnection() {
  client_.timers_.cancel(connect_timer_);
  client_.timers_.cancel(idle_timer_);
}

bool ClientConnection::connect(const sockaddr* addr, std::string* error) {
  auto s = Stream::connect(client_.streams_, addr, origin_.tls() ? client_.tls_ : nullptr,
                           origin_.host(), this);
  if (!s) {
    *error = s.error();
    return false;
  }
  stream_ = *s;
  client_.timers_.schedule_after(connect_timer_, client_.options_.connect_timeout_ms);
  return true;
}

bool ClientConnection::has_capacity() const noexcept {
  return session_ && session_->accepting() && session_->active() < session_->capacity();
}

void ClientConnection::set_state(State s) {
  if (s == state_) return;
  origin_.move(this, state_, s);
  state_ = s;
}

void ClientConnection::on_stream_open(Stream& stream) {
  client_.timers_.cancel(connect_timer_);
  const std::string_view alpn = stream.alpn();
  if (origin_.tls()) {
    if (alpn == "h2") {
      session_ = make_h2_session(*this);
    } else if (alpn.empty() || alpn == "http/1.1") {
      session_ = make_h1_session(*this);
    } else {
      abort_connecting(Failure::kProtocolError,
                       "the server chose an unknown protocol: " + std::string(alpn));
      return;
    }
  } else {
    session_ = client_.options_.cleartext_h2 ? make_h2_session(*this) : make_h1_session(*this);
  }
  session_->start();
  set_state(State::kReady);
  update_idle_timer();
  origin_.dispatch();
}

void ClientConnection::abort_connecting(Failure f, std::string_view detail) {
  set_state(State::kClosed);
  origin_.connect_failed(this, f, detail);
  stream_->close();
}

void ClientConnection::on_stream_data(Stream& /*stream*/, const std::uint8_t* data,
                                      std::size_t len) {
  if (session_ && state_ != State::kClosed) {
    const ClockScope clock;  // the responses in these bytes arrived now
    session_->on_data(data, len);
  }
}

void ClientConnection::on_stream_drained(Stream& /*stream*/) {
  if (session_ && state_ != State::kClosed) {
    const ClockScope clock;
    session_->on_drained();
  }
}

void ClientConnection::on_stream_error(Stream& /*stream*/, StreamError error,
                                       std::string_view detail) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kConnecting) {
    Failure f = Failure::kConnectFailed;
    if (error == StreamError::kConnectRefused) f = Failure::kConnectRefused;
    if (error == StreamError::kTlsFailed) f = Failure::kTlsFailure;
    if (origin_.tls() && (error == StreamError::kEof || error == StreamError::kReset)) {
      f = Failure::kTlsFailure;  // the peer hung up during the handshake
    }
    client_.timers_.cancel(connect_timer_);
    set_state(State::kClosed);
    origin_.connect_failed(this, f, detail);
    return;
  }
  set_state(State::kClosed);
  if (session_) {
    session_->on_connection_lost(
        error == StreamError::kTlsFailed ? Failure::kTlsFailure : Failure::kConnectionLost, detail);
  }
  origin_.dispatch();
}

void ClientConnection::on_stream_closed(Stream& /*stream*/) {
  stream_ = nullptr;
  if (state_ != State::kClosed) set_state(State::kClosed);
  client_.connection_closed(this);  // frees this
}

void ClientConnection::on_connect_timeout() noexcept {
  if (state_ != State::kConnecting) return;
  set_state(State::kClosed);
  origin_.connect_failed(
      this, Failure::kConnectTimeout,
      "no connection within " + std::to_string(client_.options_.connect_timeout_ms) + " ms");
  stream_->close();
}

void ClientConnection::on_idle_timeout() noexcept {
  if (state_ == State::kReady && session_ && session_->active() == 0) drain();
}

void ClientConnection::update_idle_timer() {
  if (session_ && session_->active() == 0 && state_ == State::kReady) {
    client_.timers_.schedule_after(idle_timer_, client_.options_.idle_timeout_ms);
  } else {
    client_.timers_.cancel(idle_timer_);
  }
}

void ClientConnection::submit(Request& r) {
  r.where_ = Request::Where::kInFlight;
  r.conn_ = this;
  r.new_connection_ = fresh_;
  r.protocol_ = session_->protocol();
  fresh_ = false;
  client_.timers_.cancel(idle_timer_);
  session_->submit(r);
  if (state_ == State::kReady && !has_capacity()) {
    set_state(session_->accepting() ? State::kBusy : State::kDraining);
  }
}

void ClientConnection::cancel(Request& r, Failure f) {
  if (session_) session_->cancel(r, f);
}

void ClientConnection::request_done() {
  if (state_ == State::kReady || state_ == State::kBusy) {
    if (!session_->accepting()) {
      set_state(State::kDraining);
    } else {
      set_state(has_capacity() ? State::kReady : State::kBusy);
    }
  }
  if (state_ == State::kDraining && session_->active() == 0) {
    set_state(State::kClosed);
    stream_->close();
    origin_.dispatch();
    return;
  }
  update_idle_timer();
  origin_.dispatch();
}

void ClientConnection::drain() {
  if (state_ != State::kReady && state_ != State::kBusy) return;
  set_state(State::kDraining);
  if (session_->active() == 0) {
    set_state(State::kClosed);
    stream_->close();
  }
}

void ClientConnection::abort(Failure f, std::string_view detail) {
  if (state_ == State::kClosed) return;
  const bool was_connecting = state_ == State::kConnecting;
  client_.timers_.cancel(connect_timer_);
  client_.timers_.cancel(idle_timer_);
  set_state(State::kClosed);
  if (!was_connecting && session_) session_->on_connection_lost(f, detail);
  stream_->close();
  origin_.dispatch();  // requests handed back unsent go out on another connection
}

}  // namespace fanout::transport
