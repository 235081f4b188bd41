#include "transport/stream.h"

#include <cassert>
#include <csignal>
#include <cstring>
#include <utility>

namespace fanout::transport {

std::string_view to_string(StreamError e) noexcept {
  switch (e) {
    case StreamError::kConnectRefused:
      return "connection refused";
    case StreamError::kConnectFailed:
      return "connect failed";
    case StreamError::kTlsFailed:
      return "TLS failure";
    case StreamError::kReset:
      return "connection reset";
    case StreamError::kEof:
      return "connection closed by peer";
  }
  return "unknown stream error";
}

// --- StreamLoop ---------------------------------------------------------------------------------

namespace {

// A write to a socket the peer closed raises SIGPIPE, which kills the process by default; libuv
// writes with write(2), so the signal must be ignored for the error to arrive as EPIPE instead
// (what nghttp2's tools, h2o and Node do). Process-wide and idempotent.
void ignore_sigpipe() {
  static const bool done = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)done;
}

}  // namespace

StreamLoop::StreamLoop(uv_loop_t* loop)
    : loop_(loop),
      read_buf_(new std::uint8_t[Stream::kReadBufferSize]),
      plain_buf_(new std::uint8_t[Stream::kReadBufferSize]) {
  ignore_sigpipe();
  uv_prepare_init(loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, on_prepare);
  // The flusher alone must not keep the loop running.
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
}

StreamLoop::~StreamLoop() {
  assert(closed_ && "StreamLoop::close() must run before destruction");
}

void StreamLoop::close() {
  if (closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
}

void StreamLoop::schedule_flush(Stream* s) {
  dirty_.push_back(s);
}

void StreamLoop::unlink_dirty(Stream* s) {
  IntrusiveList<Stream>::erase(s);
}

void StreamLoop::on_prepare(uv_prepare_t* handle) {
  auto* self = static_cast<StreamLoop*>(handle->data);
  // Streams made dirty by a flush (a drained handler writing more) are flushed in this same
  // turn: the loop is about to wait for I/O and nothing else would send them.
  while (Stream* s = self->dirty_.front()) {
    self->unlink_dirty(s);
    s->flush();
  }
}

// --- Stream -------------------------------------------------------------------------------------

tl::expected<Stream*, std::string> Stream::connect(StreamLoop& loop, const sockaddr* addr,
                                                   std::shared_ptr<const TlsContext> tls,
                                                   std::string_view host, StreamHandler* handler) {
  std::unique_ptr<TlsSession> session;
  if (tls) {
    auto s = TlsSession::client(std::move(tls), host);
    if (!s) return tl::unexpected(s.error());
    session = std::move(*s);
  }
  auto* st = new Stream(loop, handler);
  st->tls_ = std::move(session);
  st->started_ns_ = uv_hrtime();
  uv_tcp_init(loop.uv(), &st->tcp_);
  st->tcp_.data = st;
  const int rc = uv_tcp_connect(&st->connect_req_, &st->tcp_, addr, on_connect);
  if (rc != 0) {
    st->silent_ = true;
    st->state_ = State::kClosing;
    uv_close(reinterpret_cast<uv_handle_t*>(&st->tcp_), on_close);
    return tl::unexpected(std::string("connect: ") + uv_strerror(rc));
  }
  return st;
}

tl::expected<Stream*, std::string> Stream::accept(StreamLoop& loop, uv_stream_t* server,
                                                  std::shared_ptr<const TlsContext> tls,
                                                  StreamHandler* handler) {
  std::unique_ptr<TlsSession> session;
  if (tls) {
    auto s = TlsSession::server(std::move(tls));
    if (!s) return tl::unexpected(s.error());
    session = std::move(*s);
  }
  auto* st = new Stream(loop, handler);
  st->tls_ = std::move(session);
  uv_tcp_init(loop.uv(), &st->tcp_);
  st->tcp_.data = st;
  const int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(&st->tcp_));
  if (rc != 0) {
    st->silent_ = true;
    st->state_ = State::kClosing;
    uv_close(reinterpret_cast<uv_handle_t*>(&st->tcp_), on_close);
    return tl::unexpected(std::string("accept: ") + uv_strerror(rc));
  }
  uv_tcp_nodelay(&st->tcp_, 1);
  st->start_reading();
  if (st->tls_) {
    st->state_ = State::kHandshaking;
  } else {
    st->state_ = State::kOpen;
    handler->on_stream_open(*st);
  }
  return st;
}

void Stream::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<Stream*>(req->handle->data);
  if (self->state_ == State::kClosing) return;
  if (status != 0) {
    self->fail(
        status == UV_ECONNREFUSED ? StreamError::kConnectRefused : StreamError::kConnectFailed,
        uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&self->tcp_, 1);
  self->start_reading();
  if (self->tls_) {
    self->state_ = State::kHandshaking;
    self->drive_tls();  // sends the ClientHello
  } else {
    self->became_open();
  }
  if (self->state_ != State::kClosing && !self->out_.empty()) self->flush();
}

void Stream::start_reading() {
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
}

void Stream::pause_reading() noexcept {
  if (paused_ || state_ == State::kClosing) return;
  paused_ = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
}

void Stream::resume_reading() noexcept {
  if (!paused_ || state_ == State::kClosing) return;
  paused_ = false;
  start_reading();
}

void Stream::became_open() {
  state_ = State::kOpen;
  if (started_ns_ != 0) connect_us_ = (uv_hrtime() - started_ns_) / 1000;
  handler_->on_stream_open(*this);
}

void Stream::on_alloc(uv_handle_t* handle, std::size_t /*suggested*/, uv_buf_t* buf) {
  auto* self = static_cast<Stream*>(handle->data);
  buf->base = reinterpret_cast<char*>(self->loop_.read_buf_.get());
  buf->len = kReadBufferSize;
}

void Stream::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Stream*>(s->data);
  if (self->state_ == State::kClosing) return;
  if (nread > 0) {
    self->handle_input(reinterpret_cast<const std::uint8_t*>(buf->base),
                       static_cast<std::size_t>(nread));
  } else if (nread == UV_EOF) {
    self->fail(StreamError::kEof, "end of stream");
  } else if (nread < 0) {
    self->fail(StreamError::kReset, uv_strerror(static_cast<int>(nread)));
  }
}

void Stream::handle_input(const std::uint8_t* data, std::size_t len) {
  if (!tls_) {
    handler_->on_stream_data(*this, data, len);
    return;
  }
  tls_->feed(data, len);
  drive_tls();
}

// Runs the handshake while it is incomplete, then decrypts everything available. Returns
// false when the stream started closing.
bool Stream::drive_tls() {
  if (state_ == State::kHandshaking) {
    const TlsStatus st = tls_->handshake();
    collect_tls_output();
    if (st == TlsStatus::kWantInput) return true;
    if (st != TlsStatus::kOk) {
      fail(StreamError::kTlsFailed, tls_->error());
      return false;
    }
    became_open();
    if (state_ == State::kClosing) return false;
  }
  std::uint8_t* plain = loop_.plain_buf_.get();
  for (;;) {
    std::size_t n = 0;
    const TlsStatus st = tls_->read_plaintext(plain, kReadBufferSize, &n);
    if (st == TlsStatus::kOk) {
      handler_->on_stream_data(*this, plain, n);
      if (state_ == State::kClosing) return false;
      continue;
    }
    collect_tls_output();  // post-handshake messages (tickets, key updates)
    if (st == TlsStatus::kWantInput) return true;
    if (st == TlsStatus::kClosed) {
      fail(StreamError::kEof, "TLS close_notify");
    } else {
      fail(StreamError::kTlsFailed, tls_->error());
    }
    return false;
  }
}

void Stream::collect_tls_output() {
  const std::size_t n = tls_->output_size();
  if (n == 0) return;
  const std::size_t old = out_.size();
  out_.resize(old + n);
  const std::size_t got = tls_->take_output(out_.data() + old, n);
  out_.resize(old + got);
  mark_dirty();
}

void Stream::mark_dirty() {
  if (dirty() || state_ == State::kClosing) return;
  loop_.schedule_flush(this);
}

std::string_view Stream::peer_ip(char* out, std::size_t size) const noexcept {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (size == 0 || uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return {};
  }
  const int rc = ss.ss_family == AF_INET6
                     ? uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&ss), out, size)
                     : uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), out, size);
  return rc == 0 ? std::string_view(out) : std::string_view();
}

void Stream::write(const void* data, std::size_t len) {
  if (state_ == State::kClosing || len == 0) return;
  const auto* p = static_cast<const std::uint8_t*>(data);
  // Under TLS, plaintext waits for the flush and is encrypted there in one SSL_write: one
  // record per 16 KiB, not one per write() (an HTTP/2 request is three writes).
  std::vector<std::uint8_t>& dst = tls_ ? plain_out_ : out_;
  dst.insert(dst.end(), p, p + len);
  mark_dirty();
}

void Stream::encrypt_pending() {
  if (!tls_ || plain_out_.empty() || state_ != State::kOpen) return;
  const TlsStatus st = tls_->write_plaintext(plain_out_.data(), plain_out_.size());
  plain_out_.clear();
  if (st != TlsStatus::kOk) {
    fail(StreamError::kTlsFailed, tls_->error());
    return;
  }
  collect_tls_output();
}

std::size_t Stream::pending_output() const noexcept {
  return plain_out_.size() + out_.size() + inflight_.size();
}

void Stream::flush() {
  if (dirty()) loop_.unlink_dirty(this);
  if (state_ == State::kClosing || state_ == State::kConnecting) return;
  encrypt_pending();
  if (state_ == State::kClosing) return;
  if (dirty()) loop_.unlink_dirty(this);  // collect_tls_output marked it again
  if (writing_ || out_.empty()) return;
  uv_buf_t b =
      uv_buf_init(reinterpret_cast<char*>(out_.data()), static_cast<unsigned>(out_.size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    fail(StreamError::kReset, uv_strerror(n));
    return;
  }
  if (static_cast<std::size_t>(n) == out_.size()) {
    out_.clear();
    handler_->on_stream_drained(*this);
    return;
  }
  // The socket took part of it: hand the rest to one uv_write, which owns inflight_ until
  // on_write. New writes keep accumulating in out_ meanwhile.
  inflight_.swap(out_);
  out_.clear();
  inflight_.erase(inflight_.begin(), inflight_.begin() + n);
  b = uv_buf_init(reinterpret_cast<char*>(inflight_.data()),
                  static_cast<unsigned>(inflight_.size()));
  write_req_.data = this;
  const int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1, on_write);
  if (rc != 0) {
    inflight_.clear();
    fail(StreamError::kReset, uv_strerror(rc));
    return;
  }
  writing_ = true;
}

void Stream::on_write(uv_write_t* req, int status) {
  auto* self = static_cast<Stream*>(req->data);
  self->writing_ = false;
  self->inflight_.clear();
  if (self->state_ == State::kClosing) return;
  if (status != 0) {
    self->fail(StreamError::kReset, uv_strerror(status));
    return;
  }
  if (!self->out_.empty()) {
    self->flush();
  } else {
    self->handler_->on_stream_drained(*self);
  }
}

void Stream::fail(StreamError error, std::string_view detail) {
  if (state_ == State::kClosing) return;
  handler_->on_stream_error(*this, error, detail);
  close();
}

void Stream::close() {
  if (state_ == State::kClosing) return;
  if (tls_ && state_ == State::kOpen) {
    // Best effort close_notify: one non-blocking write, never waited for.
    tls_->shutdown();
    const std::size_t n = tls_->output_size();
    if (n > 0 && !writing_) {
      std::vector<std::uint8_t> bye(n);
      bye.resize(tls_->take_output(bye.data(), n));
      uv_buf_t b =
          uv_buf_init(reinterpret_cast<char*>(bye.data()), static_cast<unsigned>(bye.size()));
      (void)uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
    }
  }
  if (dirty()) loop_.unlink_dirty(this);
  state_ = State::kClosing;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
}

void Stream::on_close(uv_handle_t* handle) {
  auto* self = static_cast<Stream*>(handle->data);
  if (!self->silent_) self->handler_->on_stream_closed(*self);
  delete self;
}

std::string_view Stream::alpn() const noexcept {
  return tls_ ? tls_->alpn() : std::string_view();
}

}  // namespace fanout::transport
