// The HTTP client of one worker loop: POSTs prepared requests to origins over pooled HTTP/2 and
// HTTP/1.1 connections, cleartext or TLS, and reports each request's result exactly once.
//
//   submit(req) ─► Origin (tls, host, port) ─► pending FIFO ─► ClientConnection ─► ClientSession
//                   │ DNS (cached, TTL) + address guard         │ Stream (TCP [+ TLS])  (h2 | h1)
//                   └ connections by state: connecting, ready, busy, draining
//
// - One Origin per (tls, host, port). Requests wait in the origin's bounded FIFO until a
//   connection has a free stream; the pool opens another connection (up to
//   max_connections_per_origin) when every connection is full. HTTP/2 streams per connection are
//   min(peer's SETTINGS_MAX_CONCURRENT_STREAMS, max_streams_per_connection); HTTP/1.1 carries one
//   request at a time per connection, kept alive.
// - Protocol: under TLS, ALPN picks h2 or http/1.1. Cleartext (http://, only when `insecure`)
//   speaks h2c with prior knowledge, or HTTP/1.1 when cleartext_h2 is false.
// - DNS through the client's own Resolver (c-ares on this loop, resolver.h: its own timeout and
//   bound on concurrent lookups; a black-holed name never holds up another origin). IP literals
//   are parsed in place. Answers are cached per origin for min(their TTL, dns_ttl_ms), at least
//   1 s. Every address is checked by the AddressGuard, and the connection goes to the address
//   that was checked. A failed lookup fails the origin's queue with kDnsFailure (retryable).
// - An origin with no connection, no queued request and no lookup for idle_origin_ms is freed
//   (its DNS cache with it).
// - Requests refused before processing (HTTP/2 GOAWAY above last-stream-id, REFUSED_STREAM, or a
//   connection that died before the request's first byte was sent) are re-queued, up to
//   kMaxRequeues times, and only then reported as kRefusedBeforeProcessing.
// - Timeouts (connect including TLS, response headers after the request is sent, idle
//   connections) are entries of the loop's timer wheel.
//
// Threading: one Client per loop thread; every call on that thread. Ownership: the caller owns
// each Request, which must stay alive and unchanged until its on_response() has been called.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <tl/expected.hpp>

#include "transport/address_guard.h"
#include "transport/intrusive_list.h"
#include "transport/resolver.h"
#include "transport/timer_wheel.h"

namespace fanout::transport {

class LoopTimer;
class Client;
class RequestList;
class StreamLoop;
class Origin;
class ClientConnection;
class ClientH2Session;
class ClientH1Session;

enum class Protocol : std::uint8_t { kHttp1, kHttp2 };

// Why a request got no HTTP status. docs/webhook-contract.md §4 says which are retried:
// is_retryable().
enum class Failure : std::uint8_t {
  kNone,
  kDnsFailure,               // the host did not resolve
  kAddressRefused,           // every address was refused by the address guard
  kConnectRefused,           // TCP connection refused
  kConnectFailed,            // other connect errors (unreachable, ...)
  kConnectTimeout,           // TCP + TLS not done within connect_timeout_ms
  kTlsFailure,               // handshake failed: certificate, host name, protocol
  kProtocolError,            // the peer broke HTTP (malformed response, HTTP/2 error)
  kStreamReset,              // the peer reset the HTTP/2 stream
  kResponseTimeout,          // no response headers within response_timeout_ms of sending
  kConnectionLost,           // the connection died after the request was (partly) sent
  kRefusedBeforeProcessing,  // refused unprocessed kMaxRequeues + 1 times in a row
  kQueueFull,                // the origin's pending queue is full: slow down
  kCancelled,                // cancel() or close()
  kSchemeRefused,            // http:// while insecure mode is off
};
[[nodiscard]] std::string_view to_string(Failure f) noexcept;
// Failures after which the receiver may not have processed the request and a retry is due
// (docs/webhook-contract.md §4): timeouts, refused or reset connections, TLS and DNS failures,
// stream resets.
[[nodiscard]] bool is_retryable(Failure f) noexcept;

struct HeaderView {
  std::string_view name;  // any case; sent lower-cased over HTTP/2
  std::string_view value;
  // HTTP/2: never enter this header in the HPACK dynamic table. For values unique to one
  // request (an event id, a signature): indexing them only evicts useful entries and makes every
  // later lookup walk a longer chain.
  bool never_index = false;
  // HTTP/2: `name` already lower-cased by the caller (once, where it is kept), sent as it is and
  // unchecked; empty: the client lowers `name` for every request. HTTP/1.1 sends `name`.
  std::string_view lower_name = {};
};

// `name` with ASCII upper case lowered, as HTTP/2 sends header names (RFC 9113 §8.2.1), written
// at `out` (name.size() bytes); returns the lowered view. For HeaderView::lower_name.
std::string_view lower_header_name(std::string_view name, char* out) noexcept;

struct Response {
  Failure failure = Failure::kNone;
  int status = 0;           // HTTP status when failure == kNone
  std::string_view detail;  // why, for failures (errno text, TLS reason, ...)
  std::string_view body;    // the first kMaxBodyExcerpt bytes of the response body
  Protocol protocol = Protocol::kHttp2;
  bool new_connection = false;    // the request opened the connection it went out on
  std::uint32_t requeues = 0;     // times re-sent after being refused unprocessed
  std::uint64_t queued_us = 0;    // submit() to the request's first byte being written
  std::uint64_t response_us = 0;  // first byte written to response headers
  std::uint64_t total_us = 0;     // submit() to this call
};

// A request to send. Derive from it (the engine's delivery does), fill the public fields, and
// implement on_response(). Every view must stay valid until on_response() runs.
class Request : private ListNode<Request> {
 public:
  static constexpr std::size_t kMaxBodyExcerpt = 64 * 1024;
  static constexpr std::uint32_t kMaxRequeues = 3;

  bool tls = true;
  std::string_view host;  // DNS name or IP literal (IPv6 without brackets)
  std::uint16_t port = 443;
  std::string_view target = "/";  // path and query
  std::span<const HeaderView> headers;
  std::string_view body;
  std::string_view content_type = "application/json";
  // At most this many bytes of the response body are kept for Response::body (the rest is read
  // and discarded). The engine keeps a small excerpt: a delivery waiting for its retry holds it.
  std::size_t max_body_excerpt = kMaxBodyExcerpt;

  // Called exactly once per submit(), on the loop thread, never from inside submit() or
  // cancel(). The request is no longer used by the client when it is called, so it may be
  // freed or submitted again from here.
  virtual void on_response(const Response& response) = 0;

  Request() = default;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

 protected:
  virtual ~Request() = default;

 private:
  friend class Client;
  friend class RequestList;
  friend class IntrusiveList<Request>;  // the origin's pending FIFO, or the session's in-flight
                                        // list
  friend class Origin;
  friend class ClientConnection;
  friend class ClientH2Session;
  friend class ClientH1Session;

  enum class Where : std::uint8_t { kIdle, kPending, kInFlight, kCompleting };
  Where where_ = Where::kIdle;
  Origin* origin_ = nullptr;
  ClientConnection* conn_ = nullptr;
  Client* client_ = nullptr;     // set while a deferred completion is owed
  std::int32_t stream_id_ = -1;  // HTTP/2
  std::size_t body_offset_ = 0;  // HTTP/2 DATA frames written so far
  bool sent_ = false;            // first byte handed to the connection
  bool new_connection_ = false;
  Protocol protocol_ = Protocol::kHttp2;
  std::uint32_t requeues_ = 0;
  std::uint64_t submit_ns_ = 0;
  std::uint64_t sent_ns_ = 0;
  int status_ = 0;
  bool status_in_block_ = false;  // HTTP/2: a :status came in the header block being read
  std::string body_excerpt_;
  TimerEntry timer_;  // response timeout, or deferred completion
  Failure failure_ = Failure::kNone;
  std::string detail_;
};

struct ClientOptions {
  // Allow http:// (h2c or HTTP/1.1) and skip TLS verification: local tests and benchmarks only.
  bool insecure = false;
  bool cleartext_h2 = true;   // http:// speaks h2c with prior knowledge; false: HTTP/1.1
  bool offer_h2 = true;       // under TLS, offer h2 in ALPN; false: http/1.1 only
  std::string ca_file;        // extra trust anchors (PEM)
  std::vector<Subnet> allow;  // address-guard exceptions (tests allow 127.0.0.1/32)
  std::uint32_t connect_timeout_ms = 5'000;
  std::uint32_t response_timeout_ms = 10'000;
  std::uint32_t idle_timeout_ms = 60'000;
  std::uint32_t dns_ttl_ms = 60'000;     // cap on how long an answer is used (TTLs are honoured)
  std::uint32_t dns_timeout_ms = 2'000;  // per try and server; c-ares doubles it every round
  std::uint32_t dns_tries = 2;           // rounds of the servers: at most 6 s with the defaults
  std::uint32_t max_dns_queries = 256;   // lookups outstanding at once; the rest wait, FIFO
  // Empty: the system's name servers (/etc/resolv.conf). Else "ip[:port],..." (tests: their own
  // server on loopback).
  std::string dns_servers;
  // An origin idle this long (no connection, nothing queued, no lookup) is freed. 0: never.
  std::uint32_t idle_origin_ms = 60'000;
  std::uint32_t max_connections_per_origin = 8;
  std::uint32_t max_streams_per_connection = 256;
  std::size_t max_pending_per_origin = 65'536;
  std::string user_agent = "fanout";
};

struct ClientStats {
  std::size_t origins = 0;
  std::size_t connections_h2 = 0;
  std::size_t connections_h1 = 0;
  std::size_t connecting = 0;
  std::size_t pending = 0;
  std::size_t in_flight = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t requeued = 0;
  std::size_t dns_querying = 0;    // lookups sent, not yet answered
  std::size_t dns_queued = 0;      // lookups waiting for room under max_dns_queries
  std::uint64_t dns_failures = 0;  // lookups that failed (each fails its origin's queue)
  std::uint64_t origins_evicted = 0;
};

// The time requests are stamped with (submitted, sent, answered: Response's queued_us,
// response_us and total_us), uv_hrtime() nanoseconds. While a ClockScope is open on the thread,
// it is the time the outermost scope opened: one clock read for a read of many responses or a
// batch of submits, instead of one per request and stamp (three per request, ~25 ns each on this
// machine's VM). The client opens one around each read and each drained write of a connection;
// a caller submitting a batch may open one around it. A response is then stamped with when its
// bytes were read, not when its turn in the read came.
class ClockScope {
 public:
  ClockScope() noexcept : outer_(now_) {
    if (outer_ == 0) now_ = uv_hrtime();
  }
  ~ClockScope() { now_ = outer_; }
  ClockScope(const ClockScope&) = delete;
  ClockScope& operator=(const ClockScope&) = delete;

  [[nodiscard]] static std::uint64_t now_ns() noexcept { return now_ != 0 ? now_ : uv_hrtime(); }

 private:
  std::uint64_t outer_;
  // Constant-initialized and inline: every use reads it directly, with no TLS wrapper call.
  inline static thread_local std::uint64_t now_ = 0;  // 0: no scope open
};

class Client {
 public:
  // `streams` and `timers` belong to the same loop and must outlive the client.
  [[nodiscard]] static tl::expected<std::unique_ptr<Client>, std::string> create(
      StreamLoop& streams, LoopTimer& timers, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queues `request`; its on_response() follows exactly once. O(1) apart from a first DNS
  // lookup or connection for a new origin.
  void submit(Request& request);
  // Completes `request` with kCancelled if it has not completed yet (an HTTP/2 stream is
  // reset; an HTTP/1.1 connection carrying it is closed). No-op otherwise.
  void cancel(Request& request);
  // Fails every queued and in-flight request with kCancelled and closes every connection.
  // `done` runs once the last connection handle is closed (from the loop). Further submits fail
  // with kCancelled.
  void close(void (*done)(void* data), void* data);

  [[nodiscard]] ClientStats stats() const;
  [[nodiscard]] const ClientOptions& options() const noexcept { return options_; }

 private:
  friend class Origin;
  friend class ClientConnection;
  friend class ClientH2Session;
  friend class ClientH1Session;
  Client(StreamLoop& streams, LoopTimer& timers, ClientOptions options);

  void complete_later(Request& r, Failure f, std::string detail);
  // Completes a request taken off its connection by cancel() or its response timeout.
  void settle(Request& r, Failure f);
  static void finish(Request& r);
  void connection_closed(ClientConnection* c);
  void maybe_done();
  // Frees `o` (idle: see Origin::idle()). From its idle timer only.
  void evict(Origin* o);

  StreamLoop& streams_;
  LoopTimer& timers_;
  ClientOptions options_;
  AddressGuard guard_;
  std::shared_ptr<const class TlsContext> tls_;
  // Before origins_: an Origin's destructor cancels its lookup.
  std::unique_ptr<Resolver> resolver_;
  bool resolver_closed_ = false;
  bool in_close_ = false;
  // Origins by host (transparent lookup: no allocation per submit), then by (tls, port).
  struct HostHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using OriginSet = std::vector<std::unique_ptr<Origin>>;
  std::unordered_map<std::string, OriginSet, HostHash, std::equal_to<>> origins_;
  bool closing_ = false;
  std::size_t live_connections_ = 0;
  std::size_t deferred_ = 0;  // complete_later() calls not yet fired
  void (*done_)(void*) = nullptr;
  void* done_data_ = nullptr;
  std::uint64_t connections_opened_ = 0;
  std::uint64_t requeued_ = 0;
  std::uint64_t dns_failures_ = 0;
  std::uint64_t origins_evicted_ = 0;
};

}  // namespace fanout::transport
