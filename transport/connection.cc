// Connection: one pooled connection of an Origin (states in client_internal.h), its timers and
// its stream's callbacks.
#include <string>

#include "transport/client_internal.h"

namespace fanout::transport {

Connection::Connection(Client& client, Origin& origin) : client_(client), origin_(origin) {
  connect_timer_.bind<&Connection::on_connect_timeout>(this);
  idle_timer_.bind<&Connection::on_idle_timeout>(this);
}

Connection::~Connection() {
  client_.timers_.cancel(connect_timer_);
  client_.timers_.cancel(idle_timer_);
}

bool Connection::connect(const sockaddr* addr, std::string* error) {
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

bool Connection::has_capacity() const noexcept {
  return session_ && session_->accepting() && session_->active() < session_->capacity();
}

void Connection::set_state(State s) {
  if (s == state_) return;
  origin_.move(this, state_, s);
  state_ = s;
}

void Connection::on_stream_open(Stream& stream) {
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

void Connection::abort_connecting(Failure f, std::string_view detail) {
  set_state(State::kClosed);
  origin_.connect_failed(this, f, detail);
  stream_->close();
}

void Connection::on_stream_data(Stream& /*stream*/, const std::uint8_t* data, std::size_t len) {
  if (session_ && state_ != State::kClosed) session_->on_data(data, len);
}

void Connection::on_stream_drained(Stream& /*stream*/) {
  if (session_ && state_ != State::kClosed) session_->on_drained();
}

void Connection::on_stream_error(Stream& /*stream*/, StreamError error, std::string_view detail) {
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

void Connection::on_stream_closed(Stream& /*stream*/) {
  stream_ = nullptr;
  if (state_ != State::kClosed) set_state(State::kClosed);
  client_.connection_closed(this);  // frees this
}

void Connection::on_connect_timeout() noexcept {
  if (state_ != State::kConnecting) return;
  set_state(State::kClosed);
  origin_.connect_failed(
      this, Failure::kConnectTimeout,
      "no connection within " + std::to_string(client_.options_.connect_timeout_ms) + " ms");
  stream_->close();
}

void Connection::on_idle_timeout() noexcept {
  if (state_ == State::kReady && session_ && session_->active() == 0) drain();
}

void Connection::update_idle_timer() {
  if (session_ && session_->active() == 0 && state_ == State::kReady) {
    client_.timers_.schedule_after(idle_timer_, client_.options_.idle_timeout_ms);
  } else {
    client_.timers_.cancel(idle_timer_);
  }
}

void Connection::submit(Request& r) {
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

void Connection::cancel(Request& r, Failure f) {
  if (session_) session_->cancel(r, f);
}

void Connection::request_done() {
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

void Connection::drain() {
  if (state_ != State::kReady && state_ != State::kBusy) return;
  set_state(State::kDraining);
  if (session_->active() == 0) {
    set_state(State::kClosed);
    stream_->close();
  }
}

void Connection::abort(Failure f, std::string_view detail) {
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
