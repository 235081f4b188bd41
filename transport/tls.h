// TLS on BoringSSL, kept behind this one header: no other fanout file includes an SSL header
// (nghttp2 keeps its library differences in ssl_compat.h the same way).
//
// TlsContext wraps an SSL_CTX: the trust store, ALPN, and for servers the certificate. It is
// immutable once made and may be shared by every thread (BoringSSL's SSL_CTX is thread-safe for
// SSL_new). TlsSession wraps one SSL object over two memory BIOs, so the caller owns all I/O: it
// feeds ciphertext read from the socket in, and takes ciphertext to write out. No socket is
// touched here, which keeps TLS usable from libuv and from in-memory tests alike.
//
//   socket ─read─► feed() ─► [SSL] ─► read_plaintext() ─► protocol session
//   protocol session ─► write_plaintext() ─► [SSL] ─► take_output() ─► socket
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

struct ssl_ctx_st;
struct ssl_st;

namespace fanout::transport {

struct TlsClientOptions {
  // Verify the peer's certificate chain against the system trust store (Debian's
  // /etc/ssl/certs) plus `ca_file`, and its name against the host. Turning this off is the
  // explicit insecure test mode of docs/webhook-contract.md §5, and nothing else.
  bool verify_peer = true;
  // Extra trust anchors (PEM), e.g. a test CA. Empty: system store only.
  std::string ca_file;
  // Offer "h2" first in ALPN; when false only "http/1.1" is offered.
  bool offer_h2 = true;
};

struct TlsServerOptions {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM private key
  // ALPN protocols the server accepts, in preference order.
  bool accept_h2 = true;
  bool accept_http1 = true;
};

class TlsContext {
 public:
  // Errors are English sentences naming the file or setting that failed.
  [[nodiscard]] static tl::expected<std::shared_ptr<const TlsContext>, std::string> client(
      const TlsClientOptions& options);
  [[nodiscard]] static tl::expected<std::shared_ptr<const TlsContext>, std::string> server(
      const TlsServerOptions& options);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] bool is_server() const noexcept { return server_; }
  [[nodiscard]] bool verifies_peer() const noexcept { return verify_peer_; }

 private:
  friend class TlsSession;
  TlsContext(ssl_ctx_st* ctx, bool server, bool verify_peer) noexcept
      : ctx_(ctx), server_(server), verify_peer_(verify_peer) {}
  ssl_ctx_st* ctx_;
  bool server_;
  bool verify_peer_;
};

// The outcome of driving the handshake or reading.
enum class TlsStatus : std::uint8_t {
  kOk,         // progress made (handshake complete, or plaintext returned)
  kWantInput,  // needs more ciphertext from the peer
  kClosed,     // the peer sent close_notify
  kFailed,     // fatal: error() says why
};

// One TLS connection. Single-threaded. Holds a reference to its context.
class TlsSession {
 public:
  // Client: `host` is sent as SNI (unless it is an IP literal) and checked against the
  // certificate (DNS name or IP address) when the context verifies peers.
  [[nodiscard]] static tl::expected<std::unique_ptr<TlsSession>, std::string> client(
      std::shared_ptr<const TlsContext> ctx, std::string_view host);
  [[nodiscard]] static tl::expected<std::unique_ptr<TlsSession>, std::string> server(
      std::shared_ptr<const TlsContext> ctx);

  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Ciphertext from the peer. Copies it.
  void feed(const std::uint8_t* data, std::size_t len);
  // Drives the handshake; kOk once it is complete (then alpn() is known).
  [[nodiscard]] TlsStatus handshake();
  [[nodiscard]] bool handshake_done() const noexcept;
  // Decrypts into `buf`; sets `*n` to the bytes produced on kOk.
  [[nodiscard]] TlsStatus read_plaintext(std::uint8_t* buf, std::size_t cap, std::size_t* n);
  // Encrypts `len` bytes (all of them, or kFailed). Output accumulates for take_output().
  [[nodiscard]] TlsStatus write_plaintext(const std::uint8_t* data, std::size_t len);
  // Bytes of ciphertext waiting to be sent.
  [[nodiscard]] std::size_t output_size() const noexcept;
  // Moves up to `cap` bytes of waiting ciphertext into `out`; returns the count.
  std::size_t take_output(std::uint8_t* out, std::size_t cap);
  // Queues close_notify (best effort).
  void shutdown();

  // The ALPN protocol the handshake chose ("h2", "http/1.1"), or empty.
  [[nodiscard]] std::string_view alpn() const noexcept;
  // Why the last kFailed happened: BoringSSL's reason and, for verification, the X509 error.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  TlsSession(std::shared_ptr<const TlsContext> ctx, ssl_st* ssl) noexcept
      : ctx_(std::move(ctx)), ssl_(ssl) {}
  TlsStatus fail(int ret);
  // An SSL over two fresh memory BIOs, in neither role yet.
  static tl::expected<std::unique_ptr<TlsSession>, std::string> make(
      std::shared_ptr<const TlsContext> ctx);

  std::shared_ptr<const TlsContext> ctx_;
  ssl_st* ssl_;
  std::string error_;
};

// BoringSSL's version string, e.g. "BoringSSL".
[[nodiscard]] std::string_view tls_library_version() noexcept;

}  // namespace fanout::transport
