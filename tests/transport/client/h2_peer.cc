// The scripted HTTP/2 server (h2_peer.h): PeerConn's side of the session.
#include "tests/transport/client/h2_peer.h"

namespace fanout::transport::h2_test {
namespace {

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;
  return nv;
}

}  // namespace

void PeerConn::start(uv_stream_t* server) {
  uv_tcp_init(server->loop, &tcp_);
  tcp_.data = this;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) {
    fail("accept failed");
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), nullptr);
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* c = static_cast<PeerConn*>(h->data);
        *b = uv_buf_init(c->read_buf_, sizeof c->read_buf_);
      },
      on_read);

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  if (peer_.script_.manual_window) nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  const auto& iv = peer_.script_.settings;
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  flush();
}

void PeerConn::fail(std::string what) {
  peer_.errors_.push_back("connection " + std::to_string(index_) + ": " + std::move(what));
}

void PeerConn::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  PeerConn* c = self(s->data);
  if (c->closing_) return;
  if (n < 0) {
    c->close_socket();
    return;
  }
  if (n == 0) return;
  c->in_recv_ = true;
  const ssize_t rv = nghttp2_session_mem_recv(
      c->session_, reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(n));
  c->in_recv_ = false;
  if (rv < 0) {
    c->fail(std::string("mem_recv: ") + nghttp2_strerror(static_cast<int>(rv)));
    c->close_socket();
    return;
  }
  if (c->closing_) {
    c->shut();
    return;
  }
  c->flush();
}

void PeerConn::flush() {
  if (in_recv_ || closing_ || session_ == nullptr) return;
  std::string out;
  for (;;) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(std::string("mem_send: ") + nghttp2_strerror(static_cast<int>(n)));
      break;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  if (out.empty()) return;
  auto* w = new WriteReq;
  w->data = std::move(out);
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1,
                          [](uv_write_t* req, int) { delete static_cast<WriteReq*>(req->data); });
  if (rc != 0) delete w;
}

void PeerConn::close_socket() {
  if (closing_) return;
  closing_ = true;
  if (!in_recv_) shut();  // else on_read shuts it once nghttp2 returns
}

void PeerConn::shut() {
  auto* h = reinterpret_cast<uv_handle_t*>(&tcp_);
  if (uv_is_closing(h) != 0) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  uv_close(h, nullptr);
}

void PeerConn::answer(Exchange& ex, int status, std::string body) {
  if (closing_ || !ex.open) return;
  ex.answered = true;
  const std::string st = std::to_string(status);
  const nghttp2_nv nv[] = {make_nv(":status", st)};
  int rv = 0;
  if (body.empty()) {
    rv = nghttp2_submit_response(session_, ex.stream_id, nv, 1, nullptr);
  } else {
    auto& b = bodies_[ex.stream_id];
    b = std::make_unique<Body>();
    b->data = std::move(body);
    nghttp2_data_provider prd;
    prd.source.ptr = b.get();
    prd.read_callback = read_body;
    rv = nghttp2_submit_response(session_, ex.stream_id, nv, 1, &prd);
  }
  if (rv != 0) fail(std::string("submit_response: ") + nghttp2_strerror(rv));
  flush();
}

void PeerConn::send_headers(Exchange& ex, int status, std::optional<std::uint32_t> reset_code) {
  if (closing_ || !ex.open) return;
  ex.answered = true;
  ex.headers_only = true;
  ex.reset_after_response = reset_code.has_value();
  ex.reset_code = reset_code.value_or(0);
  const std::string st = std::to_string(status);
  const nghttp2_nv nv[] = {make_nv(":status", st)};
  const std::int32_t rv =
      nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, ex.stream_id, nullptr, nv, 1, nullptr);
  if (rv < 0) fail(std::string("submit_headers: ") + nghttp2_strerror(rv));
  flush();
}

void PeerConn::send_fields(Exchange& ex,
                           const std::vector<std::pair<std::string, std::string>>& fields,
                           bool end_stream) {
  if (closing_ || !ex.open) return;
  ex.answered = true;
  std::vector<nghttp2_nv> nv;
  nv.reserve(fields.size());
  for (const auto& [name, value] : fields) nv.push_back(make_nv(name, value));
  const std::int32_t rv =
      nghttp2_submit_headers(session_, end_stream ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE,
                             ex.stream_id, nullptr, nv.data(), nv.size(), nullptr);
  if (rv < 0) fail(std::string("submit_headers: ") + nghttp2_strerror(rv));
  flush();
}

void PeerConn::reset(Exchange& ex, std::uint32_t error_code) {
  if (closing_ || !ex.open) return;
  ex.answered = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, ex.stream_id, error_code);
  flush();
}

void PeerConn::goaway(std::int32_t last_stream_id, std::uint32_t error_code) {
  if (closing_) return;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_stream_id, error_code, nullptr, 0);
  flush();
}

void PeerConn::shutdown_notice() {
  if (closing_) return;
  nghttp2_submit_shutdown_notice(session_);
  flush();
}

void PeerConn::settings(const std::vector<nghttp2_settings_entry>& iv) {
  if (closing_) return;
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  flush();
}

void PeerConn::consume(Exchange& ex) {
  if (closing_ || ex.unconsumed == 0) return;
  nghttp2_session_consume(session_, ex.stream_id, ex.unconsumed);
  ex.unconsumed = 0;
  flush();
}

void PeerConn::complete(Exchange& ex) {
  ex.complete = true;
  ex.arrival = peer_.arrivals_++;
  ++requests_;
  if (peer_.script_.on_request) {
    peer_.script_.on_request(*this, ex);
  } else {
    answer(ex, 200);
  }
}

int PeerConn::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  PeerConn* c = self(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Exchange& ex = c->peer_.exchanges_.emplace_back();
  ex.conn = c->index_;
  ex.stream_id = frame->hd.stream_id;
  c->streams_[ex.stream_id] = &ex;
  c->exchanges_.push_back(&ex);
  c->max_open_ = std::max(c->max_open_, ++c->open_);
  return 0;
}

int PeerConn::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                        std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                        std::uint8_t, void* user_data) {
  PeerConn* c = self(user_data);
  Exchange* ex = c->find(frame->hd.stream_id);
  if (ex != nullptr && std::string_view(reinterpret_cast<const char*>(name), namelen) == ":path") {
    ex->path.assign(reinterpret_cast<const char*>(value), valuelen);
  }
  return 0;
}

int PeerConn::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  PeerConn* c = self(user_data);
  ++c->frames_received_;
  if (c->closing_) return 0;
  Exchange* ex = c->find(frame->hd.stream_id);
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
      if (ex == nullptr) break;
      if (c->peer_.script_.on_headers) c->peer_.script_.on_headers(*c, *ex);
      if (end && !c->closing_) c->complete(*ex);
      break;
    case NGHTTP2_DATA:
      if (ex != nullptr && end) c->complete(*ex);
      break;
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
        ++c->settings_acks_;
        if (c->peer_.script_.on_settings_ack) c->peer_.script_.on_settings_ack(*c);
      }
      break;
    case NGHTTP2_RST_STREAM:
      if (ex != nullptr) {
        ex->reset_by_client = true;
        ex->client_reset_code = frame->rst_stream.error_code;
      }
      break;
    default:
      break;
  }
  return 0;
}

int PeerConn::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  PeerConn* c = self(user_data);
  Exchange* ex = c->find(frame->hd.stream_id);
  const bool ends = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 ||
                    (frame->hd.type == NGHTTP2_HEADERS && ex != nullptr && ex->headers_only);
  if (ex != nullptr && ex->reset_after_response && ends) {
    ex->reset_after_response = false;
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, ex->stream_id, ex->reset_code);
  }
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
    c->fail("sent GOAWAY " + std::string(nghttp2_http2_strerror(frame->goaway.error_code)));
  }
  return 0;
}

int PeerConn::on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                                    void* user_data) {
  PeerConn* c = self(user_data);
  if (lib_error == NGHTTP2_ERR_REFUSED_STREAM) {
    ++c->peer_.auto_refused_;
    return 0;
  }
  c->fail("invalid frame type " + std::to_string(frame->hd.type) + " on stream " +
          std::to_string(frame->hd.stream_id) + ": " + nghttp2_strerror(lib_error));
  return 0;
}

int PeerConn::on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                            const std::uint8_t* data, std::size_t len, void* user_data) {
  PeerConn* c = self(user_data);
  Exchange* ex = c->find(stream_id);
  if (c->peer_.script_.manual_window && (ex == nullptr || !c->hold_window)) {
    nghttp2_session_consume(session, stream_id, len);
  }
  if (ex == nullptr) return 0;
  ex->body.append(reinterpret_cast<const char*>(data), len);
  if (c->peer_.script_.manual_window && c->hold_window) ex->unconsumed += len;
  if (c->peer_.script_.on_data && !c->closing_) c->peer_.script_.on_data(*c, *ex, len);
  return 0;
}

int PeerConn::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                              void* user_data) {
  PeerConn* c = self(user_data);
  Exchange* ex = c->find(stream_id);
  if (ex == nullptr) return 0;
  ex->open = false;
  ex->close_code = error_code;
  --c->open_;
  c->streams_.erase(stream_id);
  c->bodies_.erase(stream_id);
  return 0;
}

ssize_t PeerConn::read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t len,
                            std::uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* b = static_cast<Body*>(source->ptr);
  const std::size_t n = std::min(len, b->data.size() - b->offset);
  std::memcpy(buf, b->data.data() + b->offset, n);
  b->offset += n;
  if (b->offset == b->data.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

}  // namespace fanout::transport::h2_test
