// The scripted HTTP/2 server of the client's frame-level tests (h2_frames_test.cc,
// h2_connection_test.cc) and their fixture.
//
// The peer is a scripted nghttp2 server session on the client's own loop (127.0.0.1, port 0,
// h2c with prior knowledge): uv reads go to nghttp2_session_mem_recv, nghttp2_session_mem_send
// goes to uv_write. Each test scripts it through hooks that see every request stream
// (an Exchange) and answer, reset, hold, send GOAWAY or SETTINGS, or close the socket.
#pragma once

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

namespace fanout::transport::h2_test {

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
  // A HEADERS frame with exactly these fields, in order, malformed or not (nghttp2 checks no
  // field it sends), ending the stream unless `end_stream` is false.
  void send_fields(Exchange& ex, const std::vector<std::pair<std::string, std::string>>& fields,
                   bool end_stream = true);
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

// --- The client side -----------------------------------------------------------------------------

// A body whose every byte depends on its position, so a lost, repeated or reordered chunk shows.
inline std::string patterned(std::size_t n) {
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

inline void expect_ok(const RecordingRequest& r) {
  EXPECT_EQ(r.calls, 1) << r.target_storage;
  EXPECT_EQ(r.got.failure, Failure::kNone)
      << r.target_storage << ": " << to_string(r.got.failure) << ": " << r.got_detail;
  EXPECT_EQ(r.got.status, 200) << r.target_storage;
  EXPECT_EQ(r.got.protocol, Protocol::kHttp2) << r.target_storage;
}

}  // namespace fanout::transport::h2_test
