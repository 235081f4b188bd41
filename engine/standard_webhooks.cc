#include "engine/standard_webhooks.h"

#include <sodium.h>

#include <cstdlib>
#include <cstring>

namespace fanout::engine {

namespace {

static_assert(kHmacBase64Size == 4 * ((crypto_auth_hmacsha256_BYTES + 2) / 3));

const unsigned char* bytes_of(std::string_view s) noexcept {
  static constexpr unsigned char kEmpty[1] = {0};
  return s.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

void hmac_sha256_base64(std::span<const std::uint8_t> key, std::string_view message,
                        char* out) noexcept {
  crypto_auth_hmacsha256_state state;
  std::uint8_t mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  crypto_auth_hmacsha256_update(&state, bytes_of(message), message.size());
  crypto_auth_hmacsha256_final(&state, mac);
  sodium_memzero(&state, sizeof state);  // holds the padded key
  char b64[kHmacBase64Size + 1];         // sodium always NUL-terminates; the header has no NUL
  sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
  std::memcpy(out, b64, kHmacBase64Size);
}

std::size_t write_webhook_signature(bool v1, bool v1a, std::span<const std::uint8_t> secret,
                                    const Signer* signer, std::string_view message,
                                    char* out) noexcept {
  std::size_t n = 0;
  if (v1 && !secret.empty()) {
    std::memcpy(out, "v1,", 3);
    hmac_sha256_base64(secret, message, out + 3);
    n = 3 + kHmacBase64Size;
  }
  if (v1a && signer != nullptr) {
    if (n != 0) out[n++] = ' ';
    std::memcpy(out + n, "v1a,", 4);
    signer->sign_base64(message, out + n + 4);
    n += 4 + Signer::kSignatureBase64Size;
  }
  return n;
}

std::string new_webhook_secret() {
  if (sodium_init() < 0) std::abort();  // as randombytes_buf would
  std::string secret(kWebhookSecretBytes, '\0');
  randombytes_buf(secret.data(), secret.size());
  return secret;
}

std::string encode_webhook_secret(std::string_view secret) {
  std::string b64(sodium_base64_ENCODED_LEN(secret.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), bytes_of(secret), secret.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  b64.pop_back();  // the NUL
  std::string out(kWebhookSecretPrefix);
  out += b64;
  sodium_memzero(b64.data(), b64.size());
  return out;
}

std::optional<std::string> decode_webhook_secret(std::string_view text) {
  if (text.substr(0, kWebhookSecretPrefix.size()) == kWebhookSecretPrefix) {
    text.remove_prefix(kWebhookSecretPrefix.size());
  }
  unsigned char bin[kWebhookSecretMaxBytes + 3];
  std::size_t size = 0;
  const char* end = nullptr;
  if (text.empty() ||
      sodium_base642bin(bin, sizeof bin, text.data(), text.size(), nullptr, &size, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size() || size < kWebhookSecretMinBytes ||
      size > kWebhookSecretMaxBytes) {
    sodium_memzero(bin, sizeof bin);
    return std::nullopt;
  }
  std::string out(reinterpret_cast<const char*>(bin), size);
  sodium_memzero(bin, sizeof bin);
  return out;
}

}  // namespace fanout::engine
