// HttpServer::H2Session: HTTP/2 on an nghttp2 server session that does no I/O. Input goes
// through nghttp2_session_mem_recv, frames out through nghttp2_session_mem_send into the
// connection's output; each stream's request lives in a Request pooled per connection.
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "transport/server/http_server_internal.h"

namespace fanout::transport {

using http_server_detail::error_body;
using http_server_detail::find_header;
using http_server_detail::HeaderRef;
using http_server_detail::make_views;

namespace {

// HTTP/2 stops serialising frames while this much output waits for the socket, and resumes on
// on_stream_drained: a client that does not read cannot make the server buffer without bound.
constexpr std::size_t kMaxBufferedOutput = 1 << 20;
constexpr std::int32_t kH2StreamWindow = 1 << 20;
// After answering an HTTP/2 request early (413, 431), the server reads and drops up to this
// much more of its body before ending the stream with RST_STREAM(NO_ERROR). RFC 9113 §8.1
// allows the reset at once, but some clients (curl 7.88) then report an error instead of the
// answer they already have; letting a moderate upload finish keeps the answer visible.
constexpr std::size_t kMaxDiscard = 1 << 20;
constexpr std::int32_t kH2ConnectionWindow = 16 << 20;
// The largest header block the server sends (its answers' headers come from the handler):
// nghttp2's default, set explicitly. A larger one fails the answer.
constexpr std::size_t kMaxSendHeaderBlock = 64 * 1024;
// A header block decoding to more than this many times max_header_bytes ends the connection.
constexpr std::size_t kHeaderAbuseFactor = 4;
// nghttp2_session_mem_recv's answer to too many CONTINUATION frames (NGHTTP2_ERR_TOO_MANY_
// CONTINUATIONS, an enumerator only headers with the CVE-2024-28182 fix declare).
constexpr ssize_t kErrTooManyContinuations = -905;

}  // namespace

class HttpServer::H2Session final : public HttpServer::Session {
 public:
  explicit H2Session(Connection& conn);
  ~H2Session() override {
    for (const auto& req : pool_) conn_.server_.timeout_remove(kRequestTimeout, req->timeout);
    nghttp2_session_del(session_);
  }
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  [[nodiscard]] bool ok() const noexcept { return session_ != nullptr; }
  void start() override { send(); }  // the server's SETTINGS
  void feed(const std::uint8_t* data, std::size_t len) override;
  bool respond(std::uint64_t id, int status, std::span<const HttpHeaderView> headers,
               std::string_view body) override;
  bool reset(std::uint64_t id, std::uint32_t code) override;
  bool goaway(std::uint64_t id, GoawayMode mode) override;
  [[nodiscard]] bool pending(std::uint64_t id) const override;
  void drain() override { (void)goaway(0, GoawayMode::kGraceful); }
  void on_drained() override { send(); }
  [[nodiscard]] bool idle() const override {
    return !goaway_sent_ && pool_.size() == free_.size();  // no open stream
  }
  [[nodiscard]] std::uint64_t request_in_progress() const override { return 0; }
  void on_request_timeout(std::int32_t stream_id) override;
  // Serialises queued frames into the stream; closes when nghttp2 wants neither to read nor
  // to write (GOAWAY done).
  void send();

 private:
  // One request stream. Pooled per connection: the buffers keep their capacity across requests.
  struct Request {
    std::int32_t stream_id = 0;
    std::string buf;  // header names and values back to back
    std::vector<HeaderRef> refs;
    HeaderRef method, path, authority;  // pseudo-headers (name unused)
    std::vector<HttpHeaderView> views;
    std::string body;
    std::size_t header_bytes = 0;
    int error_status = 0;  // a limit was hit
    bool dispatched = false;
    bool answered = false;
    std::string out_body;  // the answer's body, read by nghttp2 through read_body
    std::size_t out_off = 0;
    std::size_t discarded = 0;  // body bytes dropped after an early answer
    TimeoutNode timeout;        // in the request FIFO until dispatched or answered
  };

  static int on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame, void* user_data);
  static int on_header(nghttp2_session* s, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t flags, void* user_data);
  static int on_data_chunk(nghttp2_session* s, std::uint8_t flags, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data);
  static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* frame, void* user_data);
  static int on_stream_close(nghttp2_session* s, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data);
  static ssize_t read_body(nghttp2_session* s, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* data_flags,
                           nghttp2_data_source* source, void* user_data);

  [[nodiscard]] Request* request(std::int32_t stream_id) const {
    return static_cast<Request*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  }
  // The request as the handler sees it (sequence not set).
  [[nodiscard]] HttpRequest view(Request& req);
  void complete(Request& req);
  bool submit(Request& req, int status, std::span<const HttpHeaderView> headers,
              std::string_view body);
  void after_submit() {
    if (!in_recv_) send();
  }

  Connection& conn_;
  nghttp2_session* session_ = nullptr;
  bool in_recv_ = false;  // inside mem_recv: sending waits until it returns
  // Decoded bytes of the header block being received (any HEADERS frame, trailers included).
  std::size_t block_bytes_ = 0;
  bool calm_ = false;  // a callback failed mem_recv for abuse: GOAWAY(ENHANCE_YOUR_CALM)
  bool goaway_sent_ = false;
  std::int32_t goaway_last_ = 0;  // the last-stream-id our GOAWAY named
  bool terminated_ = false;       // GoawayMode::kImmediate
  std::uint64_t requests_ = 0;
  std::vector<std::unique_ptr<Request>> pool_;
  std::vector<Request*> free_;
  std::vector<nghttp2_nv> nva_;
};

HttpServer::H2Session::H2Session(Connection& conn) : conn_(conn) {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  // Flood limits, explicit rather than whatever the library defaults to. RFC 9113's field
  // validation (no_rfc9113_leading_and_trailing_ws_validation, no_http_messaging) stays on.
  const HttpServerOptions& o = conn_.server_.options_;
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return;
  }
  nghttp2_option_set_max_settings(opt, o.h2_max_settings_entries);
  nghttp2_option_set_max_outbound_ack(opt, o.h2_max_queued_acks);
  nghttp2_option_set_max_send_header_block_length(opt, kMaxSendHeaderBlock);
  // A library whose fixes came without their setters (configure's probe found the fixes by
  // behaviour) keeps its own defaults: 1000 and 33 per second, 8.
#if defined(FANOUT_NGHTTP2_HAS_STREAM_RESET_RATE_LIMIT) && \
    FANOUT_NGHTTP2_HAS_STREAM_RESET_RATE_LIMIT
  nghttp2_option_set_stream_reset_rate_limit(opt, o.h2_reset_burst, o.h2_reset_rate);
#endif
#if defined(FANOUT_NGHTTP2_HAS_MAX_CONTINUATIONS) && FANOUT_NGHTTP2_HAS_MAX_CONTINUATIONS
  nghttp2_option_set_max_continuations(opt, o.h2_max_continuations);
#endif
  const int rc = nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    session_ = nullptr;
    return;
  }
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kH2StreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<std::uint32_t>(std::min<std::size_t>(o.max_header_bytes, UINT32_MAX))},
  };
  (void)nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  (void)nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kH2ConnectionWindow);
}

int HttpServer::H2Session::on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame,
                                            void* user_data) {
  auto& self = *static_cast<H2Session*>(user_data);
  self.block_bytes_ = 0;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Request* req;
  if (!self.free_.empty()) {
    req = self.free_.back();
    self.free_.pop_back();
  } else {
    req = self.pool_.emplace_back(std::make_unique<Request>()).get();
  }
  req->stream_id = frame->hd.stream_id;
  req->buf.clear();
  req->refs.clear();
  req->method = req->path = req->authority = HeaderRef{};
  req->body.clear();
  req->header_bytes = 0;
  req->error_status = 0;
  req->dispatched = req->answered = false;
  req->out_body.clear();
  req->out_off = 0;
  req->discarded = 0;
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, req);
  if (self.conn_.server_.options_.request_timeout_ms != 0) {
    req->timeout.conn = &self.conn_;
    req->timeout.stream_id = req->stream_id;
    self.conn_.server_.timeout_add(kRequestTimeout, req->timeout);
  }
  return 0;
}

int HttpServer::H2Session::on_header(nghttp2_session* /*s*/, const nghttp2_frame* frame,
                                     const std::uint8_t* name, std::size_t namelen,
                                     const std::uint8_t* value, std::size_t valuelen,
                                     std::uint8_t /*flags*/, void* user_data) {
  auto& self = *static_cast<H2Session*>(user_data);
  // Far past the advertised SETTINGS_MAX_HEADER_LIST_SIZE: not a client to answer 431 to, but
  // an HPACK bomb or a flood. Decoding the rest of the block would be wasted work.
  const std::size_t limit = self.conn_.server_.options_.max_header_bytes;
  self.block_bytes_ += namelen + valuelen + 4;
  if (self.block_bytes_ / kHeaderAbuseFactor > limit) {
    self.calm_ = true;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // trailers are accepted and ignored
  }
  Request* req = self.request(frame->hd.stream_id);
  if (req == nullptr || req->error_status != 0) return 0;
  req->header_bytes += namelen + valuelen + 4;
  if (req->header_bytes > limit) {
    req->error_status = 431;
    return 0;
  }
  HeaderRef ref;
  ref.name_off = static_cast<std::uint32_t>(req->buf.size());
  ref.name_len = static_cast<std::uint32_t>(namelen);
  req->buf.append(reinterpret_cast<const char*>(name), namelen);
  ref.value_off = static_cast<std::uint32_t>(req->buf.size());
  ref.value_len = static_cast<std::uint32_t>(valuelen);
  req->buf.append(reinterpret_cast<const char*>(value), valuelen);
  const std::string_view n(reinterpret_cast<const char*>(name), namelen);
  if (n.empty() || n[0] != ':') {
    req->refs.push_back(ref);
  } else if (n == ":method") {
    req->method = ref;
  } else if (n == ":path") {
    req->path = ref;
  } else if (n == ":authority") {
    req->authority = ref;
  }
  return 0;
}

int HttpServer::H2Session::on_data_chunk(nghttp2_session* /*s*/, std::uint8_t /*flags*/,
                                         std::int32_t stream_id, const std::uint8_t* data,
                                         std::size_t len, void* user_data) {
  auto& self = *static_cast<H2Session*>(user_data);
  Request* req = self.request(stream_id);
  if (req == nullptr) return 0;
  if (req->answered) {
    const bool over = req->discarded <= kMaxDiscard && req->discarded + len > kMaxDiscard;
    req->discarded += len;
    if (over) {
      (void)nghttp2_submit_rst_stream(self.session_, NGHTTP2_FLAG_NONE, stream_id,
                                      NGHTTP2_NO_ERROR);
    }
    return 0;
  }
  if (req->body.size() + len > self.conn_.server_.options_.max_body_bytes) {
    (void)self.submit(*req, 413, {}, error_body(413));
    return 0;
  }
  req->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int HttpServer::H2Session::on_frame_recv(nghttp2_session* /*s*/, const nghttp2_frame* frame,
                                         void* user_data) {
  auto& self = *static_cast<H2Session*>(user_data);
  if (self.conn_.closing_) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Request* req = self.request(frame->hd.stream_id);
  if (req == nullptr) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
      !req->answered) {
    if (req->error_status != 0) {
      (void)self.submit(*req, req->error_status, {}, error_body(req->error_status));
      return 0;
    }
    for (const HeaderRef& r : req->refs) {
      if (std::string_view(req->buf).substr(r.name_off, r.name_len) != "content-length") continue;
      std::uint64_t declared = 0;
      const char* v = req->buf.data() + r.value_off;
      std::from_chars(v, v + r.value_len, declared);
      if (declared > self.conn_.server_.options_.max_body_bytes) {
        (void)self.submit(*req, 413, {}, error_body(413));
        return 0;
      }
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      // A body follows: the handler may refuse the request on its headers first.
      HttpRequest head = self.view(*req);
      head.sequence = self.requests_ + 1;
      const EarlyAnswer early = self.conn_.server_.handler_->on_headers(head);
      if (early.status != 0) {
        (void)self.submit(*req, early.status, early.headers, early.body);
        return 0;
      }
    }
  }
  if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && !req->answered) self.complete(*req);
  return self.conn_.closing_ ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

HttpRequest HttpServer::H2Session::view(Request& req) {
  make_views(req.buf, req.refs, req.views);
  const std::string_view buf(req.buf);
  HttpRequest r;
  r.method = buf.substr(req.method.value_off, req.method.value_len);
  r.target = buf.substr(req.path.value_off, req.path.value_len);
  r.authority = buf.substr(req.authority.value_off, req.authority.value_len);
  r.headers = req.views;
  if (r.authority.empty()) r.authority = find_header(r.headers, "host");
  r.body = req.body;
  r.version = HttpVersion::kHttp2;
  r.tls = conn_.stream_->is_tls();
  r.connection_id = conn_.id_;
  r.peer_ip = conn_.peer_ip_;
  return r;
}

void HttpServer::H2Session::complete(Request& req) {
  if (goaway_sent_ && req.stream_id > goaway_last_) {
    // Opened before our GOAWAY reached the client, above its last-stream-id: not processed
    // (RFC 9113 §6.8), and said so, so that the client retries it on a new connection.
    req.answered = true;
    conn_.server_.timeout_remove(kRequestTimeout, req.timeout);
    (void)nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, req.stream_id,
                                    NGHTTP2_REFUSED_STREAM);
    after_submit();
    return;
  }
  req.dispatched = true;
  conn_.server_.timeout_remove(kRequestTimeout, req.timeout);
  HttpRequest r = view(req);
  r.sequence = ++requests_;
  conn_.dispatch(r, static_cast<std::uint64_t>(req.stream_id));
}

int HttpServer::H2Session::on_stream_close(nghttp2_session* /*s*/, std::int32_t stream_id,
                                           std::uint32_t /*error_code*/, void* user_data) {
  auto& self = *static_cast<H2Session*>(user_data);
  if (Request* req = self.request(stream_id)) {
    self.conn_.server_.timeout_remove(kRequestTimeout, req->timeout);
    req->stream_id = 0;
    self.free_.push_back(req);
  }
  return 0;
}

ssize_t HttpServer::H2Session::read_body(nghttp2_session* /*s*/, std::int32_t /*stream_id*/,
                                         std::uint8_t* buf, std::size_t length,
                                         std::uint32_t* data_flags, nghttp2_data_source* source,
                                         void* /*user_data*/) {
  auto& req = *static_cast<Request*>(source->ptr);
  const std::size_t n = std::min(length, req.out_body.size() - req.out_off);
  std::memcpy(buf, req.out_body.data() + req.out_off, n);
  req.out_off += n;
  if (req.out_off == req.out_body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

bool HttpServer::H2Session::submit(Request& req, int status,
                                   std::span<const HttpHeaderView> headers, std::string_view body) {
  req.answered = true;
  conn_.server_.timeout_remove(kRequestTimeout, req.timeout);
  char status_buf[4];
  status_buf[0] = static_cast<char>('0' + status / 100);
  status_buf[1] = static_cast<char>('0' + status / 10 % 10);
  status_buf[2] = static_cast<char>('0' + status % 10);
  char length_buf[24];
  const auto len_end = std::to_chars(length_buf, length_buf + sizeof length_buf, body.size()).ptr;
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(),
                      v.size(), NGHTTP2_NV_FLAG_NONE};
  };
  nva_.clear();
  nva_.push_back(nv(":status", std::string_view(status_buf, 3)));
  for (const HttpHeaderView& h : headers) nva_.push_back(nv(h.name, h.value));
  nva_.push_back(nv("content-length", std::string_view(length_buf, len_end)));

  const std::string_view method =
      std::string_view(req.buf).substr(req.method.value_off, req.method.value_len);
  const bool send_body = !body.empty() && method != "HEAD";
  int rc;
  if (send_body) {
    req.out_body.assign(body);
    req.out_off = 0;
    nghttp2_data_provider prd;
    prd.source.ptr = &req;
    prd.read_callback = read_body;
    rc = nghttp2_submit_response(session_, req.stream_id, nva_.data(), nva_.size(), &prd);
  } else {
    rc = nghttp2_submit_response(session_, req.stream_id, nva_.data(), nva_.size(), nullptr);
  }
  after_submit();
  return rc == 0;
}

bool HttpServer::H2Session::pending(std::uint64_t id) const {
  if (conn_.closing_ || id == 0 || id > INT32_MAX) return false;
  const Request* req = request(static_cast<std::int32_t>(id));
  return req != nullptr && req->dispatched && !req->answered;
}

bool HttpServer::H2Session::respond(std::uint64_t id, int status,
                                    std::span<const HttpHeaderView> headers,
                                    std::string_view body) {
  if (status < 200 || status > 999 || !pending(id)) return false;
  return submit(*request(static_cast<std::int32_t>(id)), status, headers, body);
}

bool HttpServer::H2Session::reset(std::uint64_t id, std::uint32_t code) {
  if (!pending(id)) return false;
  Request& req = *request(static_cast<std::int32_t>(id));
  req.answered = true;
  const int rc = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, req.stream_id, code);
  after_submit();
  return rc == 0;
}

bool HttpServer::H2Session::goaway(std::uint64_t /*id*/, GoawayMode mode) {
  if (conn_.closing_) return false;
  const std::int32_t last = nghttp2_session_get_last_proc_stream_id(session_);
  // Streams above `last` that are still to come out of this read are refused, not processed:
  // the client re-sends them elsewhere, so the handler must never have seen them.
  if (!goaway_sent_) goaway_last_ = last;
  int rc;
  if (mode == GoawayMode::kImmediate) {
    rc = nghttp2_session_terminate_session2(session_, last, NGHTTP2_NO_ERROR);
    terminated_ = true;
  } else {
    if (goaway_sent_) return true;
    rc = nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, nullptr, 0);
  }
  goaway_sent_ = true;
  after_submit();
  return rc == 0;
}

// The request took too long: 408 without a body (HEADERS with END_STREAM), then
// RST_STREAM(NO_ERROR) so that the client stops sending (RFC 9113 §8.1).
void HttpServer::H2Session::on_request_timeout(std::int32_t stream_id) {
  Request* req = request(stream_id);
  if (req == nullptr || req->answered || req->dispatched) return;
  (void)submit(*req, 408, {}, {});
  if (conn_.closing_ || request(stream_id) == nullptr) return;
  (void)nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR);
  after_submit();
}

void HttpServer::H2Session::feed(const std::uint8_t* data, std::size_t len) {
  in_recv_ = true;
  const ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
  in_recv_ = false;
  if (conn_.closing_) return;
  if (rv < 0) {
    // A fatal error: nghttp2 reads nothing more and queued no GOAWAY (it does for the protocol
    // errors it answers itself, and returns success then). PING or SETTINGS acknowledgements
    // piling up (NGHTTP2_ERR_FLOODED) mean a client that does not read what it asked for (or
    // sent h2_max_queued_acks of them in one read): a GOAWAY would wait behind them and a
    // lingering close for a flush that may never come, so close at once. Otherwise say why
    // (floods: ENHANCE_YOUR_CALM), then close.
    if (rv == NGHTTP2_ERR_FLOODED) {
      conn_.close_now();
      return;
    }
    const bool calm = calm_ || rv == kErrTooManyContinuations;
    (void)nghttp2_session_terminate_session(session_, calm ? NGHTTP2_ENHANCE_YOUR_CALM
                                                      : rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC
                                                          ? NGHTTP2_PROTOCOL_ERROR
                                                          : NGHTTP2_INTERNAL_ERROR);
  }
  send();
  if (rv < 0) conn_.close_after_flush(true);
}

void HttpServer::H2Session::send() {
  if (conn_.closing_) return;
  const Connection::Batch batch(conn_);
  while (conn_.pending_output() < kMaxBufferedOutput) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      conn_.close_now();
      return;
    }
    if (n == 0) break;
    conn_.write(data, static_cast<std::size_t>(n));
    if (conn_.closing_) return;
  }
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    // Streams the client opened after our GOAWAY may still be arriving: linger, unless the
    // handler asked for an immediate end.
    conn_.close_after_flush(!terminated_);
  }
}

std::unique_ptr<HttpServer::Session> HttpServer::Session::make_http2(Connection& conn) {
  auto h2 = std::make_unique<H2Session>(conn);
  if (!h2->ok()) return nullptr;
  return h2;
}

}  // namespace fanout::transport
