// A byte stream over TCP, optionally wrapped in TLS, on one libuv loop: what HTTP/1.1 and HTTP/2
// sessions (client and server side) read from and write to.
//
// Writes are buffered and flushed once per loop turn: write() appends and marks the stream
// dirty (under TLS the plaintext is encrypted at the flush, in one SSL_write); the loop's prepare
// phase, which runs after every callback of an iteration and before the loop waits for I/O, flushes
// each dirty stream with one uv_try_write, falling back to one uv_write for what the socket did not
// take. Reads land in a buffer shared by every stream of the loop (libuv calls alloc and read back
// to back), are decrypted if needed, and are handed to the handler as plaintext.
//
// States:  connecting ──► (handshaking) ──► open ──► closing ──► closed (freed)
//          every state can go to closing by close() or by a fatal error.
//
// Lifetime: a Stream is created by connect() or accept() and frees itself after its handle is
// closed, right after calling StreamHandler::on_closed(). The handler must outlive the stream
// until then. After close(), the handler gets no further call but on_closed().
// Threading: everything runs on the loop's thread.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "transport/intrusive_list.h"
#include "transport/tls.h"

namespace fanout::transport {

class Stream;

enum class StreamError : std::uint8_t {
  kConnectRefused,  // ECONNREFUSED
  kConnectFailed,   // any other connect error (unreachable, ...)
  kTlsFailed,       // handshake or record failure (certificate, ALPN, protocol)
  kReset,           // ECONNRESET or another read/write error after connect
  kEof,             // the peer closed its side
};
[[nodiscard]] std::string_view to_string(StreamError e) noexcept;

class StreamHandler {
 public:
  // TCP connected and, under TLS, the handshake done (alpn() is now known). Server streams
  // call it once the TLS handshake is done, or at once for cleartext.
  virtual void on_stream_open(Stream& stream) = 0;
  // Plaintext from the peer; valid during the call only.
  virtual void on_stream_data(Stream& stream, const std::uint8_t* data, std::size_t len) = 0;
  // Every byte written so far has been handed to the kernel (backpressure release).
  virtual void on_stream_drained(Stream& /*stream*/) {}
  // A fatal error; the stream is closing. `detail` names the cause (errno text, TLS reason).
  virtual void on_stream_error(Stream& stream, StreamError error, std::string_view detail) = 0;
  // Last call. The Stream is freed right after this returns.
  virtual void on_stream_closed(Stream& stream) = 0;

 protected:
  ~StreamHandler() = default;
};

// Per-loop state shared by streams: the flush list (a uv_prepare_t), and the read buffers.
// One per uv loop; must outlive its streams. close() before uv_loop_close. Creating one sets
// SIGPIPE to ignored, process-wide: libuv writes with write(2), and a peer that closed must
// surface as EPIPE, not kill the process.
class StreamLoop {
 public:
  explicit StreamLoop(uv_loop_t* loop);
  ~StreamLoop();
  StreamLoop(const StreamLoop&) = delete;
  StreamLoop& operator=(const StreamLoop&) = delete;

  [[nodiscard]] uv_loop_t* uv() const noexcept { return loop_; }
  // Closes the prepare handle; the object may be destroyed once uv_run has run the close
  // callback (e.g. after the loop returns).
  void close();

 private:
  friend class Stream;
  static void on_prepare(uv_prepare_t* handle);
  void schedule_flush(Stream* s);
  void unlink_dirty(Stream* s);

  uv_loop_t* loop_;
  uv_prepare_t prepare_{};
  bool closed_ = false;
  // FIFO of streams with output to flush this turn (O(1) unlink when one closes).
  IntrusiveList<Stream> dirty_;
  // Shared by every stream on this loop: ciphertext (or plaintext) in, plaintext out of TLS.
  std::unique_ptr<std::uint8_t[]> read_buf_;
  std::unique_ptr<std::uint8_t[]> plain_buf_;
};

// The ListNode links a stream into its loop's flush list (linked <=> dirty).
class Stream : private ListNode<Stream> {
 public:
  static constexpr std::size_t kReadBufferSize = 64 * 1024;

  // Starts connecting to `addr` (the address the guard checked: no second lookup). With `tls`,
  // the handshake follows, with `host` as SNI and checked name. A synchronous failure (bad
  // address, no file descriptors) is returned and no handler call will follow.
  [[nodiscard]] static tl::expected<Stream*, std::string> connect(
      StreamLoop& loop, const sockaddr* addr, std::shared_ptr<const TlsContext> tls,
      std::string_view host, StreamHandler* handler);

  // Accepts one pending connection on `server`. With a server `tls` context, the handshake
  // runs before on_stream_open.
  [[nodiscard]] static tl::expected<Stream*, std::string> accept(
      StreamLoop& loop, uv_stream_t* server, std::shared_ptr<const TlsContext> tls,
      StreamHandler* handler);

  // Appends plaintext to the output (copied; under TLS encrypted at the flush); flushed this
  // loop turn.
  // Ignored once closing.
  void write(const void* data, std::size_t len);
  // Bytes accepted by write() and not yet handed to the kernel.
  [[nodiscard]] std::size_t pending_output() const noexcept;
  // Flushes now instead of at the end of the loop turn.
  void flush();
  // Back-pressure: stops reading the socket (input already read has been delivered) until
  // resume_reading(). Idempotent; ignored once closing.
  void pause_reading() noexcept;
  void resume_reading() noexcept;
  [[nodiscard]] bool reading_paused() const noexcept { return paused_; }

  // Closes the socket (after sending close_notify under TLS, best effort; unsent output is
  // dropped). on_stream_closed follows from the loop; idempotent.
  void close();

  [[nodiscard]] bool is_open() const noexcept { return state_ == State::kOpen; }
  [[nodiscard]] bool is_tls() const noexcept { return tls_ != nullptr; }
  // The ALPN protocol chosen under TLS ("h2", "http/1.1"), else empty.
  [[nodiscard]] std::string_view alpn() const noexcept;
  // The peer's IP address as text ("192.0.2.7", "2001:db8::1") into `out`; empty when unknown.
  std::string_view peer_ip(char* out, std::size_t size) const noexcept;
  // Microseconds from connect() to on_stream_open (0 for accepted streams).
  [[nodiscard]] std::uint64_t connect_us() const noexcept { return connect_us_; }
  void set_handler(StreamHandler* handler) noexcept { handler_ = handler; }

 private:
  enum class State : std::uint8_t { kConnecting, kHandshaking, kOpen, kClosing };

  Stream(StreamLoop& loop, StreamHandler* handler) noexcept : loop_(loop), handler_(handler) {}
  ~Stream() = default;

  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* handle);

  void start_reading();
  void became_open();
  void handle_input(const std::uint8_t* data, std::size_t len);
  bool drive_tls();
  void fail(StreamError error, std::string_view detail);
  void collect_tls_output();
  void mark_dirty();
  void encrypt_pending();

  StreamLoop& loop_;
  StreamHandler* handler_;
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  State state_ = State::kConnecting;
  bool writing_ = false;  // a uv_write is in flight
  bool silent_ = false;   // failed synchronously in connect()/accept(): no handler calls
  bool paused_ = false;   // pause_reading(): the socket is not read
  std::unique_ptr<TlsSession> tls_;
  std::vector<std::uint8_t> plain_out_;  // TLS: plaintext waiting to be encrypted at flush
  std::vector<std::uint8_t> out_;        // bytes waiting for the next flush
  std::vector<std::uint8_t> inflight_;   // bytes owned by the in-flight uv_write
  std::uint64_t started_ns_ = 0;
  std::uint64_t connect_us_ = 0;

  [[nodiscard]] bool dirty() const noexcept { return linked(); }  // in the loop's flush list

  friend class StreamLoop;
  friend class IntrusiveList<Stream>;
};

}  // namespace fanout::transport
