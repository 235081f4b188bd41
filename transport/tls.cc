#include "transport/tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <unistd.h>
#include <algorithm>
#include <climits>
#include <cstring>

namespace fanout::transport {

namespace {

// Debian's bundle of the system trust store (package ca-certificates). BoringSSL's default paths
// also point at /etc/ssl/certs, but loading the bundle does not depend on hashed file names.
constexpr const char* kSystemBundle = "/etc/ssl/certs/ca-certificates.crt";

// ALPN wire format: length-prefixed names.
constexpr std::uint8_t kAlpnH2Http1[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr std::uint8_t kAlpnHttp1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr std::uint8_t kAlpnH2[] = {2, 'h', '2'};

std::string drain_errors(std::string_view what) {
  std::string out(what);
  bool first = true;
  while (const std::uint32_t e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += first ? ": " : "; ";
    out += buf;
    first = false;
  }
  return out;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

struct ServerAlpn {
  std::uint8_t list[sizeof kAlpnH2Http1];
  unsigned len;
};

int select_alpn(SSL* /*ssl*/, const std::uint8_t** out, std::uint8_t* out_len,
                const std::uint8_t* in, unsigned in_len, void* arg) {
  const auto* prefs = static_cast<const ServerAlpn*>(arg);
  // Server preference order: walk our list, pick the first the client offered.
  for (unsigned i = 0; i < prefs->len;) {
    const std::uint8_t n = prefs->list[i];
    for (unsigned j = 0; j < in_len;) {
      const std::uint8_t m = in[j];
      if (m == n && j + 1 + m <= in_len && std::memcmp(in + j + 1, prefs->list + i + 1, n) == 0) {
        *out = in + j + 1;
        *out_len = m;
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1u + m;
    }
    i += 1u + n;
  }
  // No common protocol: continue without ALPN; the server then speaks HTTP/1.1.
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

std::string_view tls_library_version() noexcept {
  return OpenSSL_version(OPENSSL_VERSION);
}

tl::expected<std::shared_ptr<const TlsContext>, std::string> TlsContext::client(
    const TlsClientOptions& options) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr) return tl::unexpected(drain_errors("cannot create a TLS client context"));
  std::shared_ptr<const TlsContext> holder(new TlsContext(ctx, false, options.verify_peer));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (options.verify_peer) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) ERR_clear_error();
    if (access(kSystemBundle, R_OK) == 0 &&
        SSL_CTX_load_verify_locations(ctx, kSystemBundle, nullptr) != 1) {
      return tl::unexpected(drain_errors(std::string("cannot load ") + kSystemBundle));
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!options.ca_file.empty() &&
      SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
    return tl::unexpected(drain_errors("cannot load the CA file " + options.ca_file));
  }
  const bool ok = options.offer_h2
                      ? SSL_CTX_set_alpn_protos(ctx, kAlpnH2Http1, sizeof kAlpnH2Http1) == 0
                      : SSL_CTX_set_alpn_protos(ctx, kAlpnHttp1, sizeof kAlpnHttp1) == 0;
  if (!ok) return tl::unexpected(drain_errors("cannot set ALPN protocols"));
  return holder;
}

tl::expected<std::shared_ptr<const TlsContext>, std::string> TlsContext::server(
    const TlsServerOptions& options) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr) return tl::unexpected(drain_errors("cannot create a TLS server context"));
  std::shared_ptr<const TlsContext> holder(new TlsContext(ctx, true, false));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
    return tl::unexpected(drain_errors("cannot load the certificate " + options.cert_file));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return tl::unexpected(drain_errors("cannot load the private key " + options.key_file));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return tl::unexpected(drain_errors("the private key does not match the certificate"));
  }
  // The preference list lives as long as the context: freed with it through ex-data would be
  // heavier than a static per-combination table.
  static const ServerAlpn kBoth = [] {
    ServerAlpn a{};
    std::memcpy(a.list, kAlpnH2Http1, sizeof kAlpnH2Http1);
    a.len = sizeof kAlpnH2Http1;
    return a;
  }();
  static const ServerAlpn kH2Only = [] {
    ServerAlpn a{};
    std::memcpy(a.list, kAlpnH2, sizeof kAlpnH2);
    a.len = sizeof kAlpnH2;
    return a;
  }();
  static const ServerAlpn kHttp1Only = [] {
    ServerAlpn a{};
    std::memcpy(a.list, kAlpnHttp1, sizeof kAlpnHttp1);
    a.len = sizeof kAlpnHttp1;
    return a;
  }();
  const ServerAlpn* prefs = options.accept_h2 && options.accept_http1 ? &kBoth
                            : options.accept_h2                       ? &kH2Only
                                                                      : &kHttp1Only;
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, const_cast<ServerAlpn*>(prefs));
  return holder;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

tl::expected<std::unique_ptr<TlsSession>, std::string> TlsSession::client(
    std::shared_ptr<const TlsContext> ctx, std::string_view host) {
  auto made = make(std::move(ctx));
  if (!made) return made;
  std::unique_ptr<TlsSession> s = std::move(*made);
  SSL* ssl = s->ssl_;
  SSL_set_connect_state(ssl);
  const std::string name(host);
  if (is_ip_literal(name)) {
    // No SNI for IP literals (RFC 6066); the certificate must carry the IP address.
    if (s->ctx_->verifies_peer() &&
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) {
      return tl::unexpected(drain_errors("cannot set the expected IP address"));
    }
  } else {
    if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) {
      return tl::unexpected(drain_errors("cannot set SNI"));
    }
    if (s->ctx_->verifies_peer() && SSL_set1_host(ssl, name.c_str()) != 1) {
      return tl::unexpected(drain_errors("cannot set the expected host name"));
    }
  }
  return s;
}

tl::expected<std::unique_ptr<TlsSession>, std::string> TlsSession::server(
    std::shared_ptr<const TlsContext> ctx) {
  auto made = make(std::move(ctx));
  if (made) SSL_set_accept_state((*made)->ssl_);
  return made;
}

tl::expected<std::unique_ptr<TlsSession>, std::string> TlsSession::make(
    std::shared_ptr<const TlsContext> ctx) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx->ctx_);
  if (ssl == nullptr) return tl::unexpected(drain_errors("cannot create a TLS session"));
  std::unique_ptr<TlsSession> s(new TlsSession(std::move(ctx), ssl));
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return tl::unexpected(drain_errors("cannot create TLS buffers"));
  }
  SSL_set_bio(ssl, rbio, wbio);  // the SSL owns both BIOs from here
  return s;
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);
}

void TlsSession::feed(const std::uint8_t* data, std::size_t len) {
  BIO* rbio = SSL_get_rbio(ssl_);
  while (len > 0) {
    const int n = BIO_write(rbio, data, static_cast<int>(std::min<std::size_t>(len, INT_MAX)));
    if (n <= 0) return;  // memory BIO writes only fail on allocation failure
    data += n;
    len -= static_cast<std::size_t>(n);
  }
}

TlsStatus TlsSession::fail(int ret) {
  const int err = SSL_get_error(ssl_, ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return TlsStatus::kWantInput;
  if (err == SSL_ERROR_ZERO_RETURN) return TlsStatus::kClosed;
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    error_ =
        std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
    ERR_clear_error();
  } else {
    error_ = drain_errors(err == SSL_ERROR_SYSCALL ? "TLS connection closed unexpectedly"
                                                   : "TLS failure");
  }
  return TlsStatus::kFailed;
}

TlsStatus TlsSession::handshake() {
  ERR_clear_error();
  const int ret = SSL_do_handshake(ssl_);
  return ret == 1 ? TlsStatus::kOk : fail(ret);
}

bool TlsSession::handshake_done() const noexcept {
  return SSL_is_init_finished(ssl_) == 1;
}

TlsStatus TlsSession::read_plaintext(std::uint8_t* buf, std::size_t cap, std::size_t* n) {
  ERR_clear_error();
  const int ret = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
  if (ret > 0) {
    *n = static_cast<std::size_t>(ret);
    return TlsStatus::kOk;
  }
  *n = 0;
  return fail(ret);
}

TlsStatus TlsSession::write_plaintext(const std::uint8_t* data, std::size_t len) {
  ERR_clear_error();
  while (len > 0) {
    const int ret = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(len, 1 << 30)));
    if (ret <= 0) {
      // A memory BIO never blocks, so any non-positive return is fatal here.
      const TlsStatus st = fail(ret);
      return st == TlsStatus::kWantInput ? TlsStatus::kFailed : st;
    }
    data += ret;
    len -= static_cast<std::size_t>(ret);
  }
  return TlsStatus::kOk;
}

std::size_t TlsSession::output_size() const noexcept {
  return BIO_pending(SSL_get_wbio(ssl_));
}

std::size_t TlsSession::take_output(std::uint8_t* out, std::size_t cap) {
  const int n =
      BIO_read(SSL_get_wbio(ssl_), out, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

void TlsSession::shutdown() {
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string_view TlsSession::alpn() const noexcept {
  const std::uint8_t* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return data == nullptr ? std::string_view()
                         : std::string_view(reinterpret_cast<const char*>(data), len);
}

}  // namespace fanout::transport
