// HTTP/2 frame-level behaviour of the client (transport/client/h2_session.cc through
// transport/client/client.h): GOAWAY, RST_STREAM, SETTINGS lowering concurrency, flow-control
// stalls, a peer closing the socket mid-flight, large responses and per-stream response timeouts.
//
// The peer is a scripted nghttp2 server session on the client's own loop (127.0.0.1, port 0,
// h2c with prior knowledge): uv reads go to nghttp2_session_mem_recv, nghttp2_session_mem_send
// goes to uv_write. Each test scripts it through hooks that see every request stream
// (an Exchange) and answer, reset, hold, send GOAWAY or SETTINGS, or close the socket.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/client_fixture.h"
#include "transport/client/client.h"

namespace fanout::transport {
namespace {

using fanout::test_support::RecordingRequest;
using fanout::test_support::Requests;

// --- The scripted server -------------------------------------------------------------------------

// One request stream as the server sees it.
struct Exchange {
  std::size_t conn = 0;     // index of the connection it came on, in accept order
  std::size_t arrival = 0;  // order among complete requests on the whole server
  std::int32_t stream_id = 0;
  std::string path;
  std::string body;
  std::size_t unconsumed = 0;  // body bytes not yet given back as window (held windows)
  bool complete = false;       // END_STREAM received
  bool open = true;            // not closed on the server yet
  bool answered = false;       // a response or reset was submitted
  std::uint32_t close_code = 0;
  bool reset_by_client = false;
  std::uint32_t client_reset_code = 0;
  // RST_STREAM(reset_code) once what was submitted is out: the HEADERS of send_headers(), or
  // the frame ending the stream of answer(). (Submitted together with the response, the reset
  // would make nghttp2 drop the response.)
  bool reset_after_response = false;
  std::uint32_t reset_code = 0;
  bool headers_only = false;  // send_headers() was used
};

class H2Peer;

// One accepted connection with its nghttp2 server session. Frames submitted from inside an
// nghttp2 callback are sent when nghttp2_session_mem_recv returns; from anywhere else at once.
class PeerConn {
 public:
  PeerConn(H2Peer& peer, std::size_t index) : peer_(peer), index_(index) {}
  ~PeerConn() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }
  PeerConn(const PeerConn&) = delete;
  PeerConn& operator=(const PeerConn&) = delete;

  void start(uv_stream_t* server);

  [[nodiscard]] std::size_t index() const { return index_; }
  // Complete requests received on this connection.
  [[nodiscard]] std::size_t requests() const { return requests_; }
  [[nodiscard]] std::size_t open_streams() const { return open_; }
  [[nodiscard]] std::size_t max_open_streams() const { return max_open_; }
  [[nodiscard]] std::size_t settings_acks() const { return settings_acks_; }
  [[nodiscard]] std::size_t frames_received() const { return frames_received_; }
  [[nodiscard]] bool closed() const { return closing_; }
  // Every stream opened on this connection, in opening order.
  [[nodiscard]] const std::vector<Exchange*>& exchanges() const { return exchanges_; }
  // Complete requests not answered yet, on streams still open.
  [[nodiscard]] std::vector<Exchange*> held() const {
    std::vector<Exchange*> v;
    for (Exchange* e : exchanges_) {
      if (e->complete && !e->answered && e->open) v.push_back(e);
    }
    return v;
  }

  // A final response; an empty body ends the stream with the HEADERS frame.
  void answer(Exchange& ex, int status, std::string body = {});
  // Response HEADERS without END_STREAM; then, with `reset_code`, RST_STREAM right after them.
  void send_headers(Exchange& ex, int status, std::optional<std::uint32_t> reset_code = {});
  void reset(Exchange& ex, std::uint32_t error_code);
  void goaway(std::int32_t last_stream_id, std::uint32_t error_code = NGHTTP2_NO_ERROR);
  // GOAWAY with last-stream-id 2^31-1: no new streams, every open one still processed.
  void shutdown_notice();
  void settings(const std::vector<nghttp2_settings_entry>& iv);
  // Gives back every held byte of `ex` as window (WINDOW_UPDATE once nghttp2 sees fit).
  void consume(Exchange& ex);
  // Closes the TCP connection without another frame.
  void close_socket();

  // With Script::manual_window: hold received body bytes (no WINDOW_UPDATE) until consume().
  bool hold_window = false;

 private:
  struct Body {
    std::string data;
    std::size_t offset = 0;
  };
  struct WriteReq {
    uv_write_t req;
    std::string data;
  };

  void flush();
  void shut();
  Exchange* find(std::int32_t stream_id) {
    auto it = streams_.find(stream_id);
    return it == streams_.end() ? nullptr : it->second;
  }
  void complete(Exchange& ex);
  void fail(std::string what);

  static PeerConn* self(void* user_data) { return static_cast<PeerConn*>(user_data); }
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* user_data);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static int on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                                   void* user_data);
  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data);
  static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t len,
                           std::uint32_t* flags, nghttp2_data_source* source, void*);

  H2Peer& peer_;
  std::size_t index_;
  uv_tcp_t tcp_{};
  nghttp2_session* session_ = nullptr;
  bool in_recv_ = false;
  bool closing_ = false;
  std::size_t requests_ = 0;
  std::size_t open_ = 0;
  std::size_t max_open_ = 0;
  std::size_t settings_acks_ = 0;
  std::size_t frames_received_ = 0;
  std::map<std::int32_t, Exchange*> streams_;  // open streams
  std::vector<Exchange*> exchanges_;
  std::map<std::int32_t, std::unique_ptr<Body>> bodies_;
  char read_buf_[64 * 1024];
};

class H2Peer {
 public:
  struct Script {
    // The server's SETTINGS, sent as soon as a connection is accepted.
    std::vector<nghttp2_settings_entry> settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    // No automatic WINDOW_UPDATE: body bytes are given back as they arrive unless the
    // connection's hold_window is set, then only by PeerConn::consume().
    bool manual_window = false;
    // Request HEADERS received (the stream is open; the body may follow).
    std::function<void(PeerConn&, Exchange&)> on_headers;
    // A whole request received (END_STREAM). Unset: answer 200 with an empty body.
    std::function<void(PeerConn&, Exchange&)> on_request;
    // A chunk of request body received.
    std::function<void(PeerConn&, Exchange&, std::size_t len)> on_data;
    // A SETTINGS ACK received.
    std::function<void(PeerConn&)> on_settings_ack;
  };

  H2Peer(uv_loop_t* loop, Script script) : script_(std::move(script)) {
    port_ = fanout::test_support::listen_on_loopback(loop, &server_, this, on_connection);
  }

  // Closes the listener and every connection; free this object after the loop ran.
  void close() {
    for (auto& c : conns_) c->close_socket();
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::size_t connections() const { return conns_.size(); }
  [[nodiscard]] PeerConn& conn(std::size_t i) { return *conns_.at(i); }
  [[nodiscard]] const std::deque<Exchange>& exchanges() const { return exchanges_; }
  // Complete requests on the whole server.
  [[nodiscard]] std::size_t arrivals() const { return arrivals_; }
  // Streams nghttp2 refused on its own (beyond the unacknowledged MAX_CONCURRENT_STREAMS).
  [[nodiscard]] std::size_t auto_refused() const { return auto_refused_; }
  // Anything the client did that the server's nghttp2 session objected to.
  [[nodiscard]] const std::vector<std::string>& errors() const { return errors_; }
  // The exchanges with this :path, in opening order.
  [[nodiscard]] std::vector<const Exchange*> with_path(std::string_view path) const {
    std::vector<const Exchange*> v;
    for (const Exchange& e : exchanges_) {
      if (e.path == path) v.push_back(&e);
    }
    return v;
  }

 private:
  friend class PeerConn;

  static void on_connection(uv_stream_t* server, int status) {
    if (status != 0) return;
    auto* self = static_cast<H2Peer*>(server->data);
    self->conns_.push_back(std::make_unique<PeerConn>(*self, self->conns_.size()));
    self->conns_.back()->start(server);
  }

  Script script_;
  uv_tcp_t server_{};
  std::uint16_t port_ = 0;
  std::vector<std::unique_ptr<PeerConn>> conns_;
  std::deque<Exchange> exchanges_;
  std::size_t arrivals_ = 0;
  std::size_t auto_refused_ = 0;
  std::vector<std::string> errors_;
};

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;
  return nv;
}

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

// --- The client side -----------------------------------------------------------------------------

// A body whose every byte depends on its position, so a lost, repeated or reordered chunk shows.
std::string patterned(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

class H2SessionTest : public fanout::test_support::ClientLoopTest {
 protected:
  void SetUp() override {
    ClientLoopTest::SetUp();
    uv_idle_init(&loop_, &idle_);
    idle_.data = this;
  }

  // First the idle handle and the server: no hook (they capture the test body's locals by
  // reference) runs once the test body has returned.
  void close_peers() override {
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
    if (peer_) {
      EXPECT_TRUE(peer_->errors().empty()) << "server objected: " << peer_->errors().front();
      peer_->close();
    }
  }
  void free_peers() override { peer_.reset(); }

  H2Peer& start_peer(H2Peer::Script script) {
    peer_ = std::make_unique<H2Peer>(&loop_, std::move(script));
    return *peer_;
  }

  // h2c with prior knowledge to 127.0.0.1.
  static ClientOptions h2c_options() {
    ClientOptions o = loopback_options();
    o.insecure = true;
    o.cleartext_h2 = true;
    return o;
  }

  // `n` requests to the peer, with targets /<prefix><i>.
  Requests make_requests(std::size_t n, const std::string& body = "{}",
                         const std::string& prefix = "r") {
    Requests v;
    for (std::size_t i = 0; i < n; ++i) {
      v.push_back(
          make_request(false, "127.0.0.1", peer_->port(), "/" + prefix + std::to_string(i), body));
    }
    return v;
  }

  // Runs `fn` after `turns` further loop iterations (a uv_idle_t; no clock involved).
  void after_turns(int turns, std::function<void()> fn) {
    idle_turns_ = turns;
    idle_fn_ = std::move(fn);
    uv_idle_start(&idle_, [](uv_idle_t* h) {
      auto* t = static_cast<H2SessionTest*>(h->data);
      if (--t->idle_turns_ > 0) return;
      uv_idle_stop(h);
      auto run = std::move(t->idle_fn_);
      run();
    });
  }

  std::unique_ptr<H2Peer> peer_;
  uv_idle_t idle_{};
  int idle_turns_ = 0;
  std::function<void()> idle_fn_;
};

void expect_ok(const RecordingRequest& r) {
  EXPECT_EQ(r.calls, 1) << r.target_storage;
  EXPECT_EQ(r.got.failure, Failure::kNone)
      << r.target_storage << ": " << to_string(r.got.failure) << ": " << r.got_detail;
  EXPECT_EQ(r.got.status, 200) << r.target_storage;
  EXPECT_EQ(r.got.protocol, Protocol::kHttp2) << r.target_storage;
}

// --- GOAWAY --------------------------------------------------------------------------------------

TEST_F(H2SessionTest, GoawayResendsTheStreamsAboveLastStreamIdOnANewConnection) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    if (c.index() > 0) {
      c.answer(ex, 200);
      return;
    }
    if (c.requests() < 20) return;  // hold until all 20 are here
    // Streams 1, 3, ..., 15: the first 8 are processed, the other 12 never will be.
    c.goaway(15);
    for (Exchange* e : c.held()) {
      if (e->stream_id <= 15) c.answer(*e, 200);
    }
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(20);
  run_all(reqs);

  for (std::size_t i = 0; i < reqs.size(); ++i) {
    expect_ok(*reqs[i]);
    EXPECT_EQ(reqs[i]->got.requeues, i < 8 ? 0u : 1u) << reqs[i]->target_storage;
  }
  const ClientStats st = client_->stats();
  EXPECT_EQ(st.requeued, 12u);
  EXPECT_EQ(st.connections_opened, 2u);
  ASSERT_EQ(peer.connections(), 2u);
  EXPECT_EQ(peer.conn(0).requests(), 20u);
  EXPECT_EQ(peer.conn(1).requests(), 12u);
  // Each request was answered once, on the connection that processed it.
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    std::size_t answered = 0;
    for (const Exchange* e : peer.with_path(reqs[i]->target_storage)) {
      answered += e->answered ? 1u : 0u;
      if (e->answered) {
        EXPECT_EQ(e->conn, i < 8 ? 0u : 1u) << reqs[i]->target_storage;
      }
    }
    EXPECT_EQ(answered, 1u) << reqs[i]->target_storage;
  }
  // The first connection drained: the client closed it once its 8 streams were answered.
  EXPECT_TRUE(peer.conn(0).closed());
}

// --- RST_STREAM ----------------------------------------------------------------------------------

TEST_F(H2SessionTest, ResetBeforeResponseHeadersIsARetryableStreamReset) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.reset(ex, NGHTTP2_INTERNAL_ERROR); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  const RecordingRequest& r = *reqs[0];
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.got.failure, Failure::kStreamReset) << to_string(r.got.failure);
  EXPECT_EQ(r.got.status, 0);
  EXPECT_TRUE(is_retryable(r.got.failure));
  EXPECT_EQ(r.got.requeues, 0u);
  EXPECT_EQ(client_->stats().requeued, 0u);
  EXPECT_EQ(peer.arrivals(), 1u) << "a reset stream is not re-sent by the client";
}

TEST_F(H2SessionTest, RefusedStreamIsResentAndSucceeds) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    if (ex.arrival == 0) {
      c.reset(ex, NGHTTP2_REFUSED_STREAM);
    } else {
      c.answer(ex, 200);
    }
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got.requeues, 1u);
  EXPECT_EQ(client_->stats().requeued, 1u);
  EXPECT_EQ(client_->stats().connections_opened, 1u) << "re-sent on the same connection";
  ASSERT_EQ(peer.exchanges().size(), 2u);
  EXPECT_EQ(peer.exchanges()[1].path, "/r0");
  EXPECT_NE(peer.exchanges()[1].stream_id, peer.exchanges()[0].stream_id);
}

TEST_F(H2SessionTest, ResetAfterResponseHeadersStillReportsTheStatus) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.send_headers(ex, 200, NGHTTP2_INTERNAL_ERROR); };
  start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got.requeues, 0u);
}

TEST_F(H2SessionTest, StreamRefusedOnEveryAttemptEndsRefusedBeforeProcessing) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.reset(ex, NGHTTP2_REFUSED_STREAM); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  const RecordingRequest& r = *reqs[0];
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.got.failure, Failure::kRefusedBeforeProcessing) << to_string(r.got.failure);
  EXPECT_TRUE(is_retryable(r.got.failure));
  EXPECT_EQ(peer.arrivals(), 1u + Request::kMaxRequeues) << "sent once, then re-sent 3 times";
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

// Response::requeues counts re-sends only; the final refusal, not re-sent, is not counted.
TEST_F(H2SessionTest, StreamRefusedOnEveryAttemptCountsOnlyTheResends) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) { c.reset(ex, NGHTTP2_REFUSED_STREAM); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);

  ASSERT_EQ(peer.arrivals(), 1u + Request::kMaxRequeues);
  EXPECT_EQ(reqs[0]->got.requeues, Request::kMaxRequeues);
  EXPECT_EQ(client_->stats().requeued, Request::kMaxRequeues);
}

// --- SETTINGS_MAX_CONCURRENT_STREAMS ------------------------------------------------------------

TEST_F(H2SessionTest, LoweredStreamLimitIsRespectedOnceAcknowledged) {
  constexpr std::size_t kBatch = 30;
  bool lowered = false;
  std::size_t lowered_at_acks = 0;  // settings_acks() when SETTINGS(2) was sent
  std::size_t open_at_ack = 0;
  std::size_t max_open_after_ack = 0;
  std::size_t arrived_before_ack = 0;
  H2Peer::Script s;
  s.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10}};
  s.on_settings_ack = [&](PeerConn& c) {
    if (lowered && c.settings_acks() == lowered_at_acks + 1) {
      open_at_ack = c.open_streams();
    }
  };
  s.on_headers = [&](PeerConn& c, Exchange&) {
    if (!lowered) return;
    if (c.settings_acks() <= lowered_at_acks) {
      ++arrived_before_ack;
    } else {
      max_open_after_ack = std::max(max_open_after_ack, c.open_streams());
    }
  };
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    if (ex.arrival == 0) {  // warm-up: the client learns the limit of 10
      c.answer(ex, 200);
      return;
    }
    const std::vector<Exchange*> held = c.held();
    const bool last = ex.arrival == kBatch;
    if (!lowered) {
      if (held.size() < 10 && !last) return;
      lowered = true;
      lowered_at_acks = c.settings_acks();
      c.settings({{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
    } else if (held.size() < 2 && !last) {
      return;  // hold: the client must fill both slots, and no more
    }
    for (Exchange* e : held) c.answer(*e, 200);
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  o.max_connections_per_origin = 1;
  make_client(o);
  auto warm = make_requests(1, "{}", "warm");
  run_all(warm);
  expect_ok(*warm[0]);

  auto reqs = make_requests(kBatch);
  run_all(reqs);
  for (auto& r : reqs) {
    expect_ok(*r);
    EXPECT_EQ(r->got.requeues, 0u) << r->target_storage;
  }
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(client_->stats().requeued, 0u);
  ASSERT_EQ(peer.connections(), 1u);
  EXPECT_EQ(peer.conn(0).max_open_streams(), 10u) << "the first 10 filled the initial limit";
  EXPECT_TRUE(lowered);
  EXPECT_EQ(arrived_before_ack, 0u) << "the ACK precedes any new stream";
  EXPECT_EQ(open_at_ack, 0u);
  EXPECT_EQ(max_open_after_ack, 2u) << "never more than the lowered limit, and up to it";
  EXPECT_EQ(peer.auto_refused(), 0u);
}

TEST_F(H2SessionTest, StreamsBeyondTheLimitInTheFirstFlightAreRefusedAndResent) {
  // The client sends its first requests before it has the server's SETTINGS (nghttp2 then
  // assumes 100 streams): the server refuses the streams beyond its 10 with REFUSED_STREAM.
  constexpr std::size_t kBatch = 30;
  std::size_t answered = 0;
  H2Peer::Script s;
  s.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10}};
  s.on_request = [&](PeerConn& c, Exchange&) {
    // Hold until 10 streams are open at once, so exactly the streams beyond them are refused.
    const std::vector<Exchange*> held = c.held();
    if (held.size() < 10 && answered + held.size() < kBatch) return;
    for (Exchange* e : held) c.answer(*e, 200);
    answered += held.size();
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  o.max_connections_per_origin = 1;
  make_client(o);
  auto reqs = make_requests(kBatch);
  run_all(reqs);

  for (std::size_t i = 0; i < reqs.size(); ++i) {
    expect_ok(*reqs[i]);
    EXPECT_EQ(reqs[i]->got.requeues, i < 10 ? 0u : 1u) << reqs[i]->target_storage;
  }
  EXPECT_EQ(peer.auto_refused(), 20u);
  EXPECT_EQ(client_->stats().requeued, 20u);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(peer.conn(0).max_open_streams(), 10u);
  EXPECT_EQ(peer.arrivals(), kBatch) << "each request processed once";
}

TEST_F(H2SessionTest, ShutdownNoticeDrainsTheConnectionWithoutRefusingItsStreams) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange&) {
    if (c.index() == 0 && c.requests() < 5) return;
    if (c.index() == 0) c.shutdown_notice();
    for (Exchange* e : c.held()) c.answer(*e, 200);
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(5);
  run_all(reqs);
  for (auto& r : reqs) {
    expect_ok(*r);
    EXPECT_EQ(r->got.requeues, 0u);
  }
  auto later = make_requests(5, "{}", "later");
  run_all(later);
  for (auto& r : later) expect_ok(*r);
  EXPECT_EQ(client_->stats().requeued, 0u);
  EXPECT_EQ(client_->stats().connections_opened, 2u) << "no new stream after the notice";
  ASSERT_EQ(peer.connections(), 2u);
  EXPECT_EQ(peer.conn(0).requests(), 5u);
  EXPECT_TRUE(peer.conn(0).closed()) << "the client closed the drained connection";
}

// --- Response headers ----------------------------------------------------------------------------

TEST_F(H2SessionTest, InformationalResponseIsNotTheFinalStatus) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    c.send_headers(ex, 103);
    c.answer(ex, 201, "final");
  };
  start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  run_all(reqs);
  EXPECT_EQ(reqs[0]->calls, 1);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kNone) << reqs[0]->got_detail;
  EXPECT_EQ(reqs[0]->got.status, 201);
  EXPECT_EQ(reqs[0]->got_body, "final");
}

TEST_F(H2SessionTest, EarlyResponseWithNoErrorResetEndsTheUploadAndKeepsTheConnection) {
  // RFC 9113 §8.1: a server may answer before the whole request arrived and stop the upload
  // with RST_STREAM(NO_ERROR). A 1 MiB body cannot all be sent within the initial windows.
  H2Peer::Script s;
  s.on_headers = [](PeerConn& c, Exchange& ex) {
    if (ex.path != "/r0") return;
    ex.reset_after_response = true;
    ex.reset_code = NGHTTP2_NO_ERROR;
    c.answer(ex, 200, "early");
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1, patterned(1024 * 1024));
  run_all(reqs);
  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got_body, "early");
  ASSERT_EQ(peer.exchanges().size(), 1u);
  EXPECT_FALSE(peer.exchanges()[0].complete) << "the upload was cut short";

  auto later = make_requests(1, patterned(200 * 1024), "later");
  run_all(later);
  expect_ok(*later[0]);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  ASSERT_EQ(peer.exchanges().size(), 2u);
  EXPECT_EQ(peer.exchanges()[1].body.size(), 200u * 1024) << "connection window accounting";
}

// --- Flow control --------------------------------------------------------------------------------

TEST_F(H2SessionTest, BodyStalledOnAClosedWindowResumesOnWindowUpdateIntact) {
  constexpr std::size_t kWindow = 1024;
  const std::string big = patterned(100 * 1024);
  std::size_t stalls = 0;
  std::size_t overruns = 0;
  H2Peer::Script s;
  s.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kWindow)}};
  s.manual_window = true;
  s.on_data = [&](PeerConn& c, Exchange& ex, std::size_t) {
    if (!c.hold_window || ex.unconsumed < kWindow) return;
    // The window is closed. Let a few loop turns pass: nothing more may arrive on the
    // connection (a byte beyond the window would also be a FLOW_CONTROL_ERROR), then reopen.
    // This chunk's DATA frame is counted in frames_received() right after this hook.
    ++stalls;
    const std::size_t frames = c.frames_received() + 1;
    const std::size_t bytes = ex.body.size();
    after_turns(3, [&c, &ex, &overruns, frames, bytes] {
      if (c.frames_received() != frames || ex.body.size() != bytes) ++overruns;
      c.consume(ex);
    });
  };
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    c.answer(ex, 200, ex.body == big ? "same" : "differs");
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  // Warm-up: the client learns the 1 KiB window before the big body starts.
  auto warm = make_requests(1, "{}", "warm");
  run_all(warm);
  expect_ok(*warm[0]);

  peer.conn(0).hold_window = true;
  auto reqs = make_requests(1, big);
  run_all(reqs);
  expect_ok(*reqs[0]);
  EXPECT_EQ(reqs[0]->got_body, "same") << "the server compared the body byte for byte";
  ASSERT_EQ(peer.exchanges().size(), 2u);
  EXPECT_EQ(peer.exchanges()[1].body.size(), big.size());
  EXPECT_EQ(stalls, big.size() / kWindow) << "one stall per window";
  EXPECT_EQ(overruns, 0u) << "the client sent while the window was closed";
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

// --- The peer closing the socket ----------------------------------------------------------------

TEST_F(H2SessionTest, PeerClosingAfterRequestHeadersLosesTheSentRequests) {
  H2Peer::Script s;
  s.on_headers = [](PeerConn& c, Exchange&) { c.close_socket(); };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(3);
  run_all(reqs);

  for (auto& r : reqs) {
    EXPECT_EQ(r->calls, 1);
    EXPECT_EQ(r->got.failure, Failure::kConnectionLost) << to_string(r->got.failure);
    EXPECT_TRUE(is_retryable(r->got.failure));
    EXPECT_EQ(r->got.requeues, 0u) << "sent requests may have been processed: not re-sent";
  }
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(peer.arrivals(), 0u);
}

TEST_F(H2SessionTest, PeerClosingMidFlightSendsTheQueuedRequestOnANewConnection) {
  H2Peer::Script s;
  s.on_headers = [](PeerConn& c, Exchange&) {
    if (c.index() == 0) c.close_socket();
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  o.max_streams_per_connection = 1;  // the second request waits in the pool
  o.max_connections_per_origin = 1;
  make_client(o);
  auto reqs = make_requests(2);
  run_all(reqs);

  EXPECT_EQ(reqs[0]->calls, 1);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kConnectionLost) << to_string(reqs[0]->got.failure);
  expect_ok(*reqs[1]);
  EXPECT_TRUE(reqs[1]->got.new_connection);
  EXPECT_EQ(client_->stats().connections_opened, 2u);
  ASSERT_EQ(peer.connections(), 2u);
  ASSERT_EQ(peer.conn(0).exchanges().size(), 1u) << "the second request never went out there";
  EXPECT_EQ(peer.conn(0).exchanges()[0]->path, "/r0");
  ASSERT_EQ(peer.conn(1).exchanges().size(), 1u);
  EXPECT_EQ(peer.conn(1).exchanges()[0]->path, "/r1");
}

// --- Response bodies -----------------------------------------------------------------------------

TEST_F(H2SessionTest, ResponseBodyKeepsExactlyTheFirst64KiB) {
  const std::vector<std::string> bodies = {patterned(100 * 1024), patterned(2 * 1024 * 1024),
                                           patterned(Request::kMaxBodyExcerpt), patterned(10)};
  H2Peer::Script s;
  s.on_request = [&](PeerConn& c, Exchange& ex) {
    const std::size_t i = static_cast<std::size_t>(std::stoul(ex.path.substr(2)));
    c.answer(ex, 200, bodies.at(i));
  };
  start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(bodies.size());
  run_all(reqs);

  for (std::size_t i = 0; i < reqs.size(); ++i) {
    expect_ok(*reqs[i]);
    EXPECT_EQ(reqs[i]->got_body.size(), std::min(bodies[i].size(), Request::kMaxBodyExcerpt));
    EXPECT_TRUE(reqs[i]->got_body == bodies[i].substr(0, Request::kMaxBodyExcerpt))
        << reqs[i]->target_storage;
  }
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

// --- Response timeout ----------------------------------------------------------------------------

TEST_F(H2SessionTest, UnansweredStreamTimesOutAloneAndTheConnectionStaysUsable) {
  H2Peer::Script s;
  s.on_request = [](PeerConn& c, Exchange& ex) {
    if (ex.path != "/r1") c.answer(ex, 200);  // /r1 is never answered
  };
  H2Peer& peer = start_peer(std::move(s));
  ClientOptions o = h2c_options();
  // Generous: /r0 and /r2 are answered at once by the peer on this loop and must not time out
  // even on a loaded machine; the event the test waits for is every request's completion.
  o.response_timeout_ms = 1'000;
  make_client(o);
  auto reqs = make_requests(3);
  run_all(reqs);

  expect_ok(*reqs[0]);
  expect_ok(*reqs[2]);
  EXPECT_EQ(reqs[1]->calls, 1);
  EXPECT_EQ(reqs[1]->got.failure, Failure::kResponseTimeout) << to_string(reqs[1]->got.failure);
  EXPECT_TRUE(is_retryable(reqs[1]->got.failure));

  auto later = make_requests(1, "{}", "later");
  run_all(later);
  expect_ok(*later[0]);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
  EXPECT_EQ(peer.connections(), 1u);
  // The timed-out stream was reset (CANCEL) before the later request's HEADERS.
  const auto r1 = peer.with_path("/r1");
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_TRUE(r1[0]->reset_by_client);
  EXPECT_EQ(r1[0]->client_reset_code, static_cast<std::uint32_t>(NGHTTP2_CANCEL));
  EXPECT_FALSE(r1[0]->open);
}

// --- Cancel --------------------------------------------------------------------------------------

// Cancelling a request in flight resets its stream and completes it from the loop, never inside
// cancel() (ClientH2Session::cancel must not call on_response synchronously).
TEST_F(H2SessionTest, CancellingAnInFlightStreamResetsItAndCompletesFromTheLoop) {
  H2Peer::Script s;
  s.on_request = [this](PeerConn& c, Exchange& ex) {
    if (ex.path == "/r0") {
      uv_stop(&loop_);  // held: the test cancels it
    } else {
      c.answer(ex, 200);
    }
  };
  H2Peer& peer = start_peer(std::move(s));
  make_client(h2c_options());
  auto reqs = make_requests(1);
  remaining_ = 1;
  client_->submit(*reqs[0]);
  run_loop();
  ASSERT_EQ(peer.arrivals(), 1u);

  client_->cancel(*reqs[0]);
  ASSERT_FALSE(reqs[0]->done) << "on_response ran from inside cancel()";
  run_loop();
  EXPECT_EQ(reqs[0]->calls, 1);
  EXPECT_EQ(reqs[0]->got.failure, Failure::kCancelled);

  auto later = make_requests(1, "{}", "later");
  run_all(later);
  expect_ok(*later[0]);
  const auto r0 = peer.with_path("/r0");
  ASSERT_EQ(r0.size(), 1u);
  EXPECT_TRUE(r0[0]->reset_by_client);
  EXPECT_EQ(r0[0]->client_reset_code, static_cast<std::uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

}  // namespace
}  // namespace fanout::transport
