// A small HTTP server on one libuv loop: what the daemon's management API and fanout-sink answer
// requests with. Not a general web server: requests are buffered whole (headers and body) and
// handed to one handler, which answers when it likes.
//
// Protocols. One listening port serves HTTP/1.1 and HTTP/2:
//   - under TLS, ALPN decides ("h2" -> HTTP/2, "http/1.1" or none -> HTTP/1.1);
//   - in cleartext, a connection whose first 24 bytes are the HTTP/2 client preface
//     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" speaks HTTP/2 (h2c with prior knowledge, RFC 9113 §3.3);
//     the first byte that differs from the preface makes it HTTP/1.1. HTTP/1.1 "Upgrade: h2c"
//     is ignored (answered in HTTP/1.1, as RFC 9110 allows).
// HTTP/1.1 is parsed by llhttp: keep-alive, pipelining (answers leave in request order whatever
// order the handler answers in), Content-Length and chunked bodies, "Connection: close",
// "Expect: 100-continue". HTTP/2 is an nghttp2 server session doing no I/O: input goes through
// nghttp2_session_mem_recv, output through nghttp2_session_mem_send into the Stream's write
// buffer, which the StreamLoop flushes once per loop turn (under TLS the frames of one input
// batch or one send are encrypted together, one record rather than one per frame).
//
// Limits, answered by the server itself (the handler never sees these requests):
//   header block (request line or pseudo-headers, names and values) > max_header_bytes -> 431
//   body (declared Content-Length or bytes received) > max_body_bytes                   -> 413
//   malformed HTTP/1.1 (llhttp error)                                                   -> 400
//   request (first byte to last, headers and body) longer than request_timeout_ms       -> 408
// Over HTTP/1.1 each of these also closes the connection once the answer is written; over
// HTTP/2 only the stream ends (the rest of the body is read and dropped; past 1 MiB more the
// stream is reset with RST_STREAM(NO_ERROR); after a 408 the reset follows at once).
// A 408 waits, like any error answer, for the answers owed to earlier pipelined requests.
// HTTP/2 floods end the connection (the h2_* options, given to nghttp2 explicitly): RST_STREAM
// past a token bucket (rapid reset) -> GOAWAY(INTERNAL_ERROR), sent by nghttp2; more CONTINUATION
// frames after one HEADERS, more SETTINGS entries in one frame, or a header block decoding to more
// than 4 x max_header_bytes -> GOAWAY(ENHANCE_YOUR_CALM), then the usual linger; more than
// h2_max_queued_acks PING or SETTINGS acknowledgements queued by one read -> closed at once (a
// client that floods and does not read is stopped by max_unsent_output_bytes and
// write_timeout_ms, below). configure refuses a libnghttp2 without the rapid-reset and
// CONTINUATION-flood fixes. Idle connections: no request in progress (nothing received of a next
// request, no answer owed or unwritten; HTTP/2: no open stream; a TLS handshake in progress counts
// as idle) for idle_timeout_ms -> closed (HTTP/2: GOAWAY(NO_ERROR) first). HTTP/2 frames that open
// no stream (PING, SETTINGS) do not extend it. A partial HTTP/2 preface counts as a request in
// progress (closed without an answer at request_timeout_ms).
// Clients that do not read: past max_unsent_output_bytes of unsent output the connection stops
// reading until its output drains; output that does not drain within write_timeout_ms closes
// it. Past max_connections open connections, a new one is closed at accept.
// Early refusal: HttpRequestHandler::on_headers sees a request's headers before its body and
// may answer it at once (an API key checked before the upload is buffered).
// When the server closes a connection on its own initiative (HTTP/1.1 error, graceful GOAWAY,
// drain) it lingers: it keeps reading and discarding input for up to 2 s after the last answer
// is written, until the client closes, so that the kernel does not reset the connection under
// unread input and destroy answers the client has not read yet.
// One uv_timer_t per server serves every timeout: one intrusive FIFO per kind (linger, idle,
// request; within a kind every timeout is equal, so FIFO order is deadline order), a deadline
// per entry, O(1) link and unlink, the timer armed to the earliest head. A connection re-enters
// the idle FIFO at its tail each time it becomes idle; a request's deadline is fixed at its
// first byte. Reads cost no timer call unless they change the connection's state.
//
// Connection states:
//   detecting ──► http1 | http2 ──► draining ──► lingering ──► closing ──► freed
//   detecting: cleartext only, until the preface matches or differs.
//   http1 | http2 are idle (in the idle FIFO), receiving a request (in the request FIFO: the
//   connection for HTTP/1.1, each incomplete stream for HTTP/2) or waiting for answers (in
//   neither: a handler may take as long as it likes).
//   draining: HTTP/2 has sent GOAWAY, HTTP/1.1 reads no new request; once every accepted
//   request is answered and written the connection lingers (or, after GoawayMode::kImmediate
//   or when the client asked for "Connection: close", closes at once).
//   Any state goes to closing on a socket error, the client's EOF, reset(), close_connection()
//   or close().
//
// Asynchronous answers. The handler gets an HttpResponder, a small value it may copy and keep:
// (server, connection slot, slot generation, request id). A connection's slot is reused only
// with a new generation, so a responder whose connection closed, whose stream was reset or which
// already answered is simply stale: its calls return false and touch nothing. Responders must
// not be used after the server's close callback has run.
//
// Threading: everything on the loop's thread. Lifetime: create(), then drain() or close(); free
// the server only after the close callback ran.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "transport/intrusive_list.h"
#include "transport/stream.h"
#include "transport/tls.h"

namespace fanout::transport {

class HttpServer;

enum class HttpVersion : std::uint8_t { kHttp1, kHttp2 };
[[nodiscard]] std::string_view to_string(HttpVersion v) noexcept;  // "http/1.1", "h2"

struct HttpHeaderView {
  std::string_view name;
  std::string_view value;
};

// One complete request. Every view points into the connection's buffers and is valid during
// the on_request call only: copy what must outlive it.
struct HttpRequest {
  std::string_view method;
  std::string_view target;     // HTTP/2 :path; HTTP/1.1 request-target (path and query)
  std::string_view authority;  // HTTP/2 :authority, else the Host header (may be empty)
  // Regular headers in arrival order, pseudo-headers excluded. HTTP/2 names are lower case
  // (the protocol requires it); HTTP/1.1 names are as sent.
  std::span<const HttpHeaderView> headers;
  std::string_view body;  // de-chunked
  HttpVersion version = HttpVersion::kHttp1;
  bool tls = false;
  std::uint64_t connection_id = 0;  // unique per server, from 1
  std::string_view peer_ip;         // the client's IP address as text (empty when unknown)
  std::uint64_t sequence = 0;       // 1-based index of this request on its connection

  // The first header named `name` (ASCII case-insensitive), or empty.
  [[nodiscard]] std::string_view header(std::string_view name) const noexcept;
};

enum class GoawayMode : std::uint8_t {
  // HTTP/2: GOAWAY(NO_ERROR) naming the highest stream id received so far; those streams are
  // still answered, later ones are refused (RST_STREAM(REFUSED_STREAM) for those already on
  // their way, never handed to the handler: the client retries them elsewhere), and the
  // connection closes once the last is answered and written.
  // HTTP/1.1: no request is read after this one; requests pipelined after it are dropped
  // unanswered; the connection closes once the answers up to this one are written (this one's
  // carries "Connection: close" unless it was answered already).
  kGraceful,
  // HTTP/2: GOAWAY(NO_ERROR) with the same last-stream-id, then close as soon as it is written;
  // unanswered requests are abandoned. HTTP/1.1: close the connection now.
  kImmediate,
};

// The handle to answer one request with. Copyable, 24 bytes; default-constructed it is stale.
// Every call returns true when it took effect, false when the responder is stale (connection
// gone or closing, stream reset by the client, already answered or reset).
class HttpResponder {
 public:
  HttpResponder() noexcept = default;

  // Answers with `status` (200 to 999: no interim answers), `headers` (names lower case for HTTP/2;
  // content-length, connection and transfer-encoding are the server's and must not be given),
  // and `body`. Everything is copied. Answers to a HEAD request carry no body.
  bool respond(int status, std::span<const HttpHeaderView> headers = {},
               std::string_view body = {}) const;
  // HTTP/2: RST_STREAM with `h2_error_code` (default INTERNAL_ERROR, 0x2). HTTP/1.1, which has
  // no per-request reset: closes the connection at once (pending answers are lost).
  bool reset(std::uint32_t h2_error_code = 0x2) const;
  // Closes the request's connection at once (unsent output is dropped).
  bool close_connection() const;
  // Sends GOAWAY on the request's connection (HTTP/1.1: see GoawayMode). Valid as long as the
  // connection is open, even after this request was answered.
  bool goaway(GoawayMode mode) const;
  // True while respond() would succeed.
  [[nodiscard]] bool pending() const;

 private:
  friend class HttpServer;
  HttpResponder(HttpServer* server, std::uint32_t slot, std::uint32_t generation,
                std::uint64_t id) noexcept
      : server_(server), slot_(slot), generation_(generation), id_(id) {}

  HttpServer* server_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint32_t generation_ = 0;
  std::uint64_t id_ = 0;  // HTTP/2 stream id, or HTTP/1.1 request sequence
};

// What on_headers() answers a request with before its body is read (status 0: read on).
struct EarlyAnswer {
  int status = 0;
  std::span<const HttpHeaderView> headers;  // as HttpResponder::respond's
  std::string_view body;
};

class HttpRequestHandler {
 public:
  // A complete request. Answer through `responder`, now or later (or never: a black hole).
  // May call any HttpServer or HttpResponder function, including close() and drain().
  virtual void on_request(const HttpRequest& request, HttpResponder responder) = 0;
  // A request whose headers are complete and whose body has not been read (`head.body` is
  // empty; called only for requests that announce a body: HTTP/1.1 Content-Length > 0 or
  // chunked, HTTP/2 HEADERS without END_STREAM). A non-zero status is answered at once, copied,
  // and on_request never sees the request: the body is not buffered (HTTP/1.1 closes the
  // connection after the answer, lingering; HTTP/2 ends the stream as after a 413). So a
  // handler can refuse a bad key before a 16 MiB upload is held. Must not call the server.
  virtual EarlyAnswer on_headers(const HttpRequest& head) {
    (void)head;
    return {};
  }

 protected:
  ~HttpRequestHandler() = default;
};

struct HttpServerOptions {
  // Numeric IPv4 or IPv6 address and port; port 0 picks a free one (see port()).
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  // TLS context from TlsContext::server(); null serves cleartext (h2c and HTTP/1.1).
  std::shared_ptr<const TlsContext> tls;
  // A request's header block: larger -> 431. HTTP/2 also advertises it as
  // SETTINGS_MAX_HEADER_LIST_SIZE, and a header block (request or trailers) that decodes to more
  // than 4 times this much (HPACK turns one byte into up to 4 KiB) ends the connection with
  // GOAWAY(ENHANCE_YOUR_CALM): the client ignored the advertised limit by far.
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_body_bytes = 8 * 1024 * 1024;
  // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; for HTTP/1.1, the most pipelined requests waiting
  // for an answer before the connection is closed as abusive.
  std::uint32_t max_concurrent_streams = 1024;
  // HTTP/2 flood limits, given to nghttp2 explicitly (the defaults are nghttp2's own). Each
  // ends the connection; the server keeps serving others. See transport/README.md.
  // Rapid reset (CVE-2023-44487): a token bucket on incoming RST_STREAM, h2_reset_burst tokens
  // refilled at h2_reset_rate per second; a RST_STREAM finding it empty makes nghttp2 send
  // GOAWAY(INTERNAL_ERROR): no new stream (requests already in the same read still reach the
  // handler), the connection closes once its open streams end.
  std::uint32_t h2_reset_burst = 1000;
  std::uint32_t h2_reset_rate = 33;
  // CONTINUATION flood (CVE-2024-28182): CONTINUATION frames allowed after one HEADERS frame;
  // one more -> GOAWAY(ENHANCE_YOUR_CALM). HEADERS and 8 CONTINUATION frames of 16 KiB carry
  // 144 KiB of header block, over twice max_header_bytes' default; raise it along with
  // max_header_bytes beyond about 128 KiB.
  std::uint32_t h2_max_continuations = 8;
  // PING and SETTINGS floods: acknowledgements queued inside nghttp2 and not yet written (at
  // least 1). Only one read can queue this many: a client that does not read stops being read
  // once max_unsent_output_bytes wait. One more -> the connection is closed at once, without
  // GOAWAY.
  std::uint32_t h2_max_queued_acks = 1000;
  // Entries in one SETTINGS frame; more -> GOAWAY(ENHANCE_YOUR_CALM). At least 1.
  std::uint32_t h2_max_settings_entries = 32;
  int backlog = 511;
  // A connection with no request in progress (nothing received of a next request, no answer
  // owed or unwritten; HTTP/2: no open stream) is closed after this long; HTTP/2 sends
  // GOAWAY(NO_ERROR) first. 0 disables.
  std::uint32_t idle_timeout_ms = 60'000;
  // From a request's first byte to its last (headers and body) at most this long, else the
  // server answers 408: HTTP/1.1 then closes the connection (after lingering), HTTP/2 resets
  // that stream with RST_STREAM(NO_ERROR) after the answer. 0 disables.
  std::uint32_t request_timeout_ms = 30'000;
  // Back-pressure on clients that send and do not read: once a connection's output not yet
  // handed to the kernel passes this, it stops reading (HTTP/1.1: also between pipelined
  // requests of one read) until the output drains. Its memory is then bounded by this plus one
  // answer, whatever the client uploads. 0: no bound.
  std::size_t max_unsent_output_bytes = 1 << 20;
  // Output waiting for the client this long without ever draining completely -> the
  // connection is closed (counted in write_timeouts()). 0 disables.
  std::uint32_t write_timeout_ms = 30'000;
  // Open connections at most. A connection accepted past it is closed at once, unanswered
  // (counted in refused_connections()). 0: no cap.
  std::size_t max_connections = 0;
};

class HttpServer {
 public:
  using CloseCallback = void (*)(HttpServer* server, void* data) noexcept;

  // Binds and listens. Errors name the address and libuv's reason; after a bind or listen
  // error the handle is closed and freed by the loop's next run. `loop` and `handler` must
  // outlive the server.
  [[nodiscard]] static tl::expected<std::unique_ptr<HttpServer>, std::string> create(
      StreamLoop& loop, HttpServerOptions options, HttpRequestHandler* handler);

  // Asserts (debug) that the close callback ran.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the chosen one when options.port was 0).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // Open connections (lingering and closing ones included until their handle is closed).
  [[nodiscard]] std::size_t connections() const noexcept { return live_connections_; }
  // Connections closed at accept because max_connections were open.
  [[nodiscard]] std::uint64_t refused_connections() const noexcept { return refused_; }
  // Connections closed because their output did not drain within write_timeout_ms.
  [[nodiscard]] std::uint64_t write_timeouts() const noexcept { return write_timeouts_; }
  // Times a connection stopped reading because of max_unsent_output_bytes.
  [[nodiscard]] std::uint64_t read_pauses() const noexcept { return read_pauses_; }

  // Graceful stop: stops listening, closes idle connections now and every other one once it
  // has answered what it accepted (HTTP/2 sends GOAWAY first). `callback` runs once the
  // listener, every connection and the server's timer are closed: from the loop, or at once
  // when that is already the case. A black-holed request keeps its connection open: call
  // close() to force the end.
  void drain(CloseCallback callback = nullptr, void* data = nullptr);
  // Abrupt stop: stops listening and closes every connection now. `callback` replaces any
  // given to drain() (each callback runs at most once), with the same timing. Free the server
  // only after it ran.
  void close(CloseCallback callback = nullptr, void* data = nullptr);

 private:
  // Defined in http_server_internal.h (Session, Connection), h1_session.cc (H1Session) and
  // h2_session.cc (H2Session); nested so that they reach the server's private parts.
  class Connection;
  class Session;
  class H1Session;
  class H2Session;
  friend class HttpResponder;
  struct Slot {
    Connection* conn = nullptr;
    std::uint32_t generation = 0;
  };

  HttpServer(StreamLoop& loop, HttpServerOptions options, HttpRequestHandler* handler);
  static void on_connection(uv_stream_t* server, int status);
  static void on_listener_closed(uv_handle_t* handle);
  void accept_one();
  void stop_listening();
  // drain() and close(): stop listening, apply `each` to every connection, finish when all closed.
  void stop(CloseCallback callback, void* data, void (Connection::*each)());
  void connection_gone(std::uint32_t slot);
  // Timeouts: one FIFO per kind, every entry of a kind with the same timeout, so FIFO order is
  // deadline order; one timer armed to the earliest head (lazily: removals never re-arm it).
  enum TimeoutKind : std::uint8_t {
    kLingerTimeout,
    kIdleTimeout,
    kRequestTimeout,
    kWriteTimeout,
    kTimeoutKinds
  };
  // Linked (ListNode::linked()) while in its kind's FIFO.
  struct TimeoutNode : ListNode<TimeoutNode> {
    std::uint64_t deadline = 0;
    std::uint64_t key = 0;  // what it was linked for (the request in progress)
    Connection* conn = nullptr;
    std::int32_t stream_id = 0;  // HTTP/2 request timeouts: the stream
  };
  using TimeoutList = IntrusiveList<TimeoutNode>;
  [[nodiscard]] std::uint64_t timeout_ms(TimeoutKind kind) const noexcept;
  void timeout_add(TimeoutKind kind, TimeoutNode& node);
  inline void timeout_remove(TimeoutKind kind, TimeoutNode& node);  // http_server_internal.h
  static void on_timer(uv_timer_t* timer);
  static void on_timer_closed(uv_handle_t* handle);
  void maybe_finished();
  [[nodiscard]] Connection* find(std::uint32_t slot, std::uint32_t generation) const noexcept;

  StreamLoop& loop_;
  HttpServerOptions options_;
  HttpRequestHandler* handler_;
  // Heap-allocated and freed by its own close callback, so that a failed create() can return
  // at once while libuv still holds the handle.
  uv_tcp_t* listener_ = nullptr;
  std::uint16_t port_ = 0;
  bool listener_closed_ = true;  // no handle open (before bind, or after its close callback)
  // One timer for every timeout of every connection (lingering: kLingerMs in http_server.cc).
  uv_timer_t* timer_ = nullptr;
  bool timer_closed_ = true;
  bool in_timer_ = false;
  std::uint64_t timer_due_ = UINT64_MAX;  // loop time the timer is armed for, if it is
  TimeoutList timeouts_[kTimeoutKinds];
  bool stopping_ = false;  // drain() or close() called
  bool finished_ = false;  // close callback delivered
  std::size_t live_connections_ = 0;
  std::uint64_t refused_ = 0;
  std::uint64_t write_timeouts_ = 0;
  std::uint64_t read_pauses_ = 0;
  std::uint64_t next_connection_id_ = 1;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  CloseCallback close_callback_ = nullptr;
  void* close_data_ = nullptr;
};

}  // namespace fanout::transport
