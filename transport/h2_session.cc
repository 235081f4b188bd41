// HTTP/2 client session: nghttp2 frames requests and parses responses; it does no I/O. Frames
// go to the connection's Stream, which buffers them and flushes once per loop turn. Request
// bodies are never copied into nghttp2: DATA frames are written straight from the caller's body
// (NGHTTP2_DATA_FLAG_NO_COPY and the send_data callback).
#include <algorithm>
#include <cassert>
#include <cstring>

#include "transport/client_internal.h"

namespace fanout::transport {

namespace {

// Past this many unflushed bytes the session stops producing frames until the stream drains.
constexpr std::size_t kWriteHighWater = 1 << 20;
// Our receive windows: responses are small, but a generous window avoids WINDOW_UPDATE churn.
constexpr std::int32_t kStreamWindow = 1 << 20;
constexpr std::int32_t kConnectionWindow = 1 << 24;

nghttp2_nv make_nv(std::string_view name, std::string_view value, std::uint8_t flags) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = flags;
  return nv;
}

bool has_upper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

class H2Session final : public Session {
 public:
  explicit H2Session(Connection& conn) : conn_(conn) {}
  ~H2Session() override {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  Protocol protocol() const noexcept override { return Protocol::kHttp2; }

  void start() override {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    // Streams queued by nghttp2 beyond the peer's limit are ours to schedule: we track
    // capacity, so never exceed it silently.
    nghttp2_session_client_new2(&session_, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kStreamWindow)},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
    send();
  }

  void submit(Request& r) override {
    const Origin& o = conn_.origin();
    const Client& client = conn_.client();
    nva_.clear();
    nva_.push_back(
        make_nv(":method", "POST", NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE));
    nva_.push_back(make_nv(":scheme", o.tls() ? "https" : "http",
                           NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE));
    nva_.push_back(make_nv(":authority", o.authority(), NGHTTP2_NV_FLAG_NO_COPY_NAME));
    nva_.push_back(make_nv(":path", r.target, NGHTTP2_NV_FLAG_NO_COPY_NAME));
    nva_.push_back(make_nv("content-type", r.content_type, NGHTTP2_NV_FLAG_NO_COPY_NAME));
    length_ = std::to_string(r.body.size());
    nva_.push_back(make_nv("content-length", length_, NGHTTP2_NV_FLAG_NO_COPY_NAME));
    nva_.push_back(
        make_nv("user-agent", client.options().user_agent, NGHTTP2_NV_FLAG_NO_COPY_NAME));
    // Header names go lower-cased on the wire (RFC 9113). Lower-case copies of names that need
    // it live in one reused buffer, reserved up front so the views into it stay put.
    std::size_t need = 0;
    for (const HeaderView& h : r.headers) need += has_upper(h.name) ? h.name.size() : 0;
    lowered_.clear();
    lowered_.reserve(need);
    for (const HeaderView& h : r.headers) {
      std::string_view name = h.name;
      if (has_upper(name)) {
        const std::size_t at = lowered_.size();
        for (const char c : name)
          lowered_ += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        name = std::string_view(lowered_).substr(at, name.size());
      }
      nva_.push_back(
          make_nv(name, h.value, h.never_index ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE));
    }
    nghttp2_data_provider prd;
    prd.source.ptr = &r;
    prd.read_callback = on_read_body;
    const std::int32_t id = nghttp2_submit_request(session_, nullptr, nva_.data(), nva_.size(),
                                                   r.body.empty() ? nullptr : &prd, &r);
    if (id < 0) {
      if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
        accepting_ = false;
        conn_.origin().requeue(r);
      } else {
        r.failure_ = Failure::kProtocolError;
        r.detail_ = nghttp2_strerror(id);
        Client::finish(r);
      }
      return;
    }
    r.stream_id_ = id;
    inflight_.push_back(&r);
    // Requests submitted while input is processed (a completion resubmitting) are framed in
    // one nghttp2_session_send after mem_recv returns, not one each.
    if (!in_recv_) send();
  }

  void on_data(const std::uint8_t* data, std::size_t len) override {
    if (dead_) return;
    in_recv_ = true;
    const ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
    in_recv_ = false;
    if (rv < 0) {
      conn_.abort(Failure::kProtocolError, nghttp2_strerror(static_cast<int>(rv)));
      return;
    }
    send();
  }

  void on_drained() override {
    if (blocked_) {
      blocked_ = false;
      send();
    }
  }

  void on_connection_lost(Failure f, std::string_view detail) override {
    dead_ = true;
    while (Request* r = inflight_.pop_front()) {
      nghttp2_session_set_stream_user_data(session_, r->stream_id_, nullptr);
      conn_.client().timers_.cancel(r->timer_);
      if (!r->sent_) {
        conn_.origin().requeue(*r);
      } else {
        r->failure_ = f;
        r->detail_ = std::string(detail);
        Client::finish(*r);
      }
    }
  }

  void cancel(Request& r, Failure f) override {
    nghttp2_session_set_stream_user_data(session_, r.stream_id_, nullptr);
    if (!dead_)
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, r.stream_id_, NGHTTP2_CANCEL);
    conn_.client().timers_.cancel(r.timer_);
    inflight_.remove(&r);
    send();
    conn_.request_done();
    conn_.client().settle(r, f);
  }

  std::size_t capacity() const noexcept override {
    const std::uint32_t peer =
        nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return std::min<std::size_t>(peer, conn_.client().options().max_streams_per_connection);
  }
  std::size_t active() const noexcept override { return inflight_.size(); }
  bool accepting() const noexcept override { return accepting_ && !dead_; }

 private:
  void send() {
    if (dead_ || blocked_ || sending_) return;
    sending_ = true;
    const int rv = nghttp2_session_send(session_);
    sending_ = false;
    if (rv != 0) {
      conn_.abort(Failure::kProtocolError, nghttp2_strerror(rv));
      return;
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      // Both sides sent GOAWAY and every stream is closed: nothing more can happen here.
      accepting_ = false;
      conn_.request_done();
    }
  }

  static H2Session* self(void* user_data) { return static_cast<H2Session*>(user_data); }

  static ssize_t on_send(nghttp2_session*, const std::uint8_t* data, std::size_t len, int,
                         void* user_data) {
    H2Session* s = self(user_data);
    Stream* stream = s->conn_.stream();
    if (stream->pending_output() >= kWriteHighWater) {
      s->blocked_ = true;
      return NGHTTP2_ERR_WOULDBLOCK;
    }
    stream->write(data, len);
    return static_cast<ssize_t>(len);
  }

  static ssize_t on_read_body(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t length,
                              std::uint32_t* flags, nghttp2_data_source* source, void*) {
    auto* r = static_cast<Request*>(source->ptr);
    const std::size_t n = std::min(length, r->body.size() - r->body_offset_);
    r->body_offset_ += n;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (r->body_offset_ == r->body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  static int on_send_data(nghttp2_session*, nghttp2_frame* frame, const std::uint8_t* framehd,
                          std::size_t length, nghttp2_data_source* source, void* user_data) {
    H2Session* s = self(user_data);
    Stream* stream = s->conn_.stream();
    if (stream->pending_output() >= kWriteHighWater) {
      s->blocked_ = true;
      return NGHTTP2_ERR_WOULDBLOCK;
    }
    auto* r = static_cast<Request*>(source->ptr);
    // on_read_body already advanced the offset past this frame's bytes.
    const std::size_t start = r->body_offset_ - length;
    stream->write(framehd, 9);
    if (frame->data.padlen > 0) {
      const std::uint8_t pad_len = static_cast<std::uint8_t>(frame->data.padlen - 1);
      stream->write(&pad_len, 1);
    }
    stream->write(r->body.data() + start, length);
    if (frame->data.padlen > 1) {
      static const std::uint8_t kZeros[256] = {};
      stream->write(kZeros, frame->data.padlen - 1);
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto* r =
        static_cast<Request*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (r == nullptr || r->sent_) return 0;
    H2Session* s = self(user_data);
    r->sent_ = true;
    r->sent_ns_ = uv_hrtime();
    r->timer_.set_callback(
        [](TimerEntry&, void* data) noexcept {
          auto* req = static_cast<Request*>(data);
          req->conn_->cancel(*req, Failure::kResponseTimeout);
        },
        r);
    s->conn_.client().timers_.schedule_after(r->timer_,
                                             s->conn_.client().options().response_timeout_ms);
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                       const std::uint8_t* name, std::size_t namelen, const std::uint8_t* value,
                       std::size_t valuelen, std::uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || std::memcmp(name, ":status", 7) != 0) {
      return 0;
    }
    auto* r =
        static_cast<Request*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (r == nullptr) return 0;
    int status = 0;
    for (std::size_t i = 0; i < valuelen && i < 3; ++i) status = status * 10 + (value[i] - '0');
    if (status >= 200) r->status_ = status;  // 1xx: the final response follows
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    H2Session* s = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        auto* r = static_cast<Request*>(
            nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
        // Headers met the response timeout; the same span again bounds the body, so a
        // receiver that stalls its body cannot hold the stream forever.
        if (r != nullptr && r->status_ != 0) {
          s->conn_.client().timers_.schedule_after(r->timer_,
                                                   s->conn_.client().options().response_timeout_ms);
        }
        break;
      }
      case NGHTTP2_GOAWAY:
        // Streams above last-stream-id are closed by nghttp2 with REFUSED_STREAM and re-queued
        // in on_stream_close; the rest may still complete here.
        s->accepting_ = false;
        s->conn_.request_done();
        break;
      case NGHTTP2_SETTINGS:
        // The peer's stream limit may have changed.
        s->conn_.request_done();
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void*) {
    auto* r = static_cast<Request*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (r == nullptr) return 0;
    const std::size_t room = Request::kMaxBodyExcerpt - r->body_excerpt_.size();
    r->body_excerpt_.append(reinterpret_cast<const char*>(data), std::min(room, len));
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, std::int32_t stream_id,
                             std::uint32_t error_code, void* user_data) {
    auto* r = static_cast<Request*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (r == nullptr) return 0;
    H2Session* s = self(user_data);
    s->conn_.client().timers_.cancel(r->timer_);
    s->inflight_.remove(r);
    if (r->status_ != 0) {
      // The receiver answered; a reset after the headers does not undo the answer.
      r->failure_ = Failure::kNone;
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
      // Not processed (GOAWAY above last-stream-id, or refused): safe to send again.
      s->conn_.origin().requeue(*r);
      s->conn_.request_done();
      return 0;
    } else {
      r->failure_ =
          error_code == NGHTTP2_NO_ERROR ? Failure::kProtocolError : Failure::kStreamReset;
      r->detail_ = error_code == NGHTTP2_NO_ERROR ? "stream closed without a response"
                                                  : nghttp2_http2_strerror(error_code);
    }
    s->conn_.request_done();
    Client::finish(*r);
    return 0;
  }

  Connection& conn_;
  nghttp2_session* session_ = nullptr;
  RequestList inflight_;
  bool accepting_ = true;
  bool dead_ = false;
  bool blocked_ = false;
  bool sending_ = false;
  bool in_recv_ = false;
  std::vector<nghttp2_nv> nva_;
  std::string lowered_;
  std::string length_;
};

std::unique_ptr<Session> make_h2_session(Connection& c) {
  return std::make_unique<H2Session>(c);
}

}  // namespace fanout::transport
