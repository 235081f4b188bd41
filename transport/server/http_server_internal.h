// Internals of transport/server/http_server.h: the pieces the server's files share. Not for use
// outside transport/server/.
//
//   http_server.cc  Connection (protocol detection, output batching, timeouts, closing),
//                   HttpResponder, HttpServer (accept, timeout FIFOs, drain and close)
//   h1_session.cc   H1Session: llhttp, pipelined answers in request order
//   h2_session.cc   H2Session: an nghttp2 server session, pooled per-stream requests
//
// A Connection owns one Session, made when the protocol is known (ALPN under TLS, the preface in
// cleartext); the session reaches the server through its Connection (conn_.server_), which is
// why both are nested in HttpServer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/server/http_server.h"
#include "transport/stream.h"

namespace fanout::transport {

namespace http_server_detail {

inline char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// HttpRequest::header's search, inline here for the sessions' per-request "host" lookup.
inline std::string_view find_header(std::span<const HttpHeaderView> headers,
                                    std::string_view name) noexcept {
  for (const HttpHeaderView& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

// The body the server itself answers limit and parse errors with.
inline std::string_view error_body(int status) noexcept {
  switch (status) {
    case 400:
      return "bad request\n";
    case 408:
      return "request timeout\n";
    case 413:
      return "request body too large\n";
    case 431:
      return "request header fields too large\n";
    default:
      return "error\n";
  }
}

// Offsets of one header in a request's buffer (views are made once the buffer stops growing).
struct HeaderRef {
  std::uint32_t name_off = 0;
  std::uint32_t name_len = 0;
  std::uint32_t value_off = 0;
  std::uint32_t value_len = 0;
};

inline void make_views(const std::string& buf, const std::vector<HeaderRef>& refs,
                       std::vector<HttpHeaderView>& views) {
  views.clear();
  for (const HeaderRef& r : refs) {
    views.push_back({std::string_view(buf).substr(r.name_off, r.name_len),
                     std::string_view(buf).substr(r.value_off, r.value_len)});
  }
}

}  // namespace http_server_detail

// --- Session: the protocol half of a connection --------------------------------------------------

class HttpServer::Session {
 public:
  // The session of a connection whose protocol is now known (h1_session.cc,
  // h2_session.cc); make_http2 answers null when nghttp2 cannot make a session.
  [[nodiscard]] static std::unique_ptr<Session> make_http1(Connection& conn);
  [[nodiscard]] static std::unique_ptr<Session> make_http2(Connection& conn);

  virtual ~Session() = default;
  // Sends what the session sends first, once it is the connection's (HTTP/2: SETTINGS).
  virtual void start() {}
  virtual void feed(const std::uint8_t* data, std::size_t len) = 0;
  virtual bool respond(std::uint64_t id, int status, std::span<const HttpHeaderView> headers,
                       std::string_view body) = 0;
  virtual bool reset(std::uint64_t id, std::uint32_t code) = 0;
  virtual bool goaway(std::uint64_t id, GoawayMode mode) = 0;
  [[nodiscard]] virtual bool pending(std::uint64_t id) const = 0;
  // The server is draining: take no new request, close once the accepted ones are answered.
  virtual void drain() = 0;
  // Everything written so far reached the kernel.
  virtual void on_drained() = 0;
  // No request in progress and no answer owed (the connection's output aside).
  [[nodiscard]] virtual bool idle() const = 0;
  // Nonzero, and distinct per request, while a request is being received whose timeout the
  // connection itself carries (HTTP/1.1); 0 otherwise.
  [[nodiscard]] virtual std::uint64_t request_in_progress() const = 0;
  // request_timeout_ms ran out for the request in progress (HTTP/2: for `stream_id`).
  virtual void on_request_timeout(std::int32_t stream_id) = 0;
  // The connection's output drained after the session stopped taking input for it (HTTP/1.1
  // keeps the rest of a read it stopped in): go on. Input may stop again.
  virtual void resume_input() {}
};

// --- Connection: one accepted stream, protocol detection, closing --------------------------------

class HttpServer::Connection final : public StreamHandler {
 public:
  Connection(HttpServer& server, std::uint32_t slot, std::uint32_t generation, std::uint64_t id)
      : server_(server), slot_(slot), generation_(generation), id_(id) {
    linger_node_.conn = idle_node_.conn = request_node_.conn = write_node_.conn = this;
  }

  void on_stream_open(Stream& stream) override;
  void on_stream_data(Stream& stream, const std::uint8_t* data, std::size_t len) override;
  void on_stream_drained(Stream& stream) override;
  void on_stream_error(Stream& stream, StreamError error, std::string_view detail) override;
  void on_stream_closed(Stream& stream) override;

  // Closes the socket now; unsent output is dropped.
  void close_now() {
    if (closing_) return;
    closing_ = true;
    update_timeouts();
    stream_->close();
  }
  // Closes once every byte written so far is handed to the kernel. With `linger`, then waits
  // up to kLingerMs for the client to close, discarding its input.
  void close_after_flush(bool linger = false) {
    if (closing_ || lingering_) return;
    linger_after_flush_ = linger;
    if (pending_output() == 0) {
      flushed_for_close();
    } else {
      close_when_flushed_ = true;
    }
  }
  void flushed_for_close() {
    if (linger_after_flush_) {
      lingering_ = true;
      update_timeouts();
      server_.timeout_add(kLingerTimeout, linger_node_);
    } else {
      close_now();
    }
  }
  void drain();
  // max_unsent_output_bytes passed: stop reading until the output drains.
  [[nodiscard]] bool output_over_bound() const {
    const std::size_t bound = server_.options_.max_unsent_output_bytes;
    return bound != 0 && pending_output() > bound;
  }
  void pause_input() {
    if (read_paused_ || closing_) return;
    read_paused_ = true;
    ++server_.read_pauses_;
    stream_->pause_reading();
  }
  // Puts the connection in the idle or request FIFO, or neither, as its state says. Called
  // after every event that may change that state; O(1), and no timer call when nothing changed.
  void update_timeouts();
  void on_timeout(TimeoutKind kind, std::int32_t stream_id);
  void receive(const std::uint8_t* data, std::size_t len);

  // Output. Under TLS, writes made inside a batch are gathered and encrypted as one write when
  // the outermost batch ends: one TLS record per batch instead of one per HTTP/2 frame or
  // HTTP/1.1 answer. In cleartext the Stream's own buffer already gathers them.
  void write(const void* data, std::size_t len) {
    if (batch_depth_ > 0 && stream_->is_tls()) {
      batch_.append(static_cast<const char*>(data), len);
    } else {
      stream_->write(data, len);
    }
  }
  [[nodiscard]] std::size_t pending_output() const {
    return stream_->pending_output() + batch_.size();
  }
  class Batch {
   public:
    explicit Batch(Connection& c) : c_(c) { ++c_.batch_depth_; }
    ~Batch() {
      if (--c_.batch_depth_ != 0 || c_.batch_.empty()) return;
      if (!c_.closing_) c_.stream_->write(c_.batch_.data(), c_.batch_.size());
      c_.batch_.clear();
    }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

   private:
    Connection& c_;
  };

  void dispatch(const HttpRequest& request, std::uint64_t id) {
    server_.handler_->on_request(request, HttpResponder(&server_, slot_, generation_, id));
  }

  HttpServer& server_;
  Stream* stream_ = nullptr;
  std::uint32_t slot_;
  std::uint32_t generation_;
  std::uint64_t id_;
  char peer_text_[46] = {};   // INET6_ADDRSTRLEN
  std::string_view peer_ip_;  // in peer_text_, set at accept
  bool closing_ = false;
  bool close_when_flushed_ = false;
  bool linger_after_flush_ = false;
  bool lingering_ = false;    // answers written; waiting for the client's EOF
  bool read_paused_ = false;  // pause_input(): until the output drains
  // Entries in the server's timeout FIFOs.
  TimeoutNode linger_node_;
  TimeoutNode idle_node_;
  TimeoutNode request_node_;
  TimeoutNode write_node_;  // output waiting for the client
  std::string detect_;      // cleartext bytes matching a prefix of the HTTP/2 preface, so far
  int batch_depth_ = 0;
  std::string batch_;
  std::unique_ptr<Session> session_;

 private:
  void start(HttpVersion version);
};

// Defined here rather than in http_server.cc so that the sessions' per-request calls inline it.
// Every kind's FIFO unlinks the same way: `kind` only says which one holds the node.
inline void HttpServer::timeout_remove([[maybe_unused]] TimeoutKind kind, TimeoutNode& node) {
  if (node.linked()) TimeoutList::erase(&node);
}

}  // namespace fanout::transport
