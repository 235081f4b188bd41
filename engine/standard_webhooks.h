// Standard Webhooks signatures (docs/webhook-contract.md §8; https://www.standardwebhooks.com):
// what lets a receiver check that a delivery is fresh and was meant for it, which
// X-Partoo-Signature-v1 (Ed25519 of the body alone, signer.h) cannot: a signed body replayed to
// another tenant's endpoint verifies there too.
//
// Three headers on each attempt:
//   webhook-id         the event id (the same on every attempt: the receiver's idempotency key)
//   webhook-timestamp  Unix seconds of this attempt (so signatures are made per attempt)
//   webhook-signature  space-separated entries, each "<version>,<base64 signature>" of the
//                      signed content `id + "." + timestamp + "." + body` (exact bytes):
//                        v1   HMAC-SHA256 with the subscription's secret (44 base64 chars)
//                        v1a  Ed25519 with the engine's key, the one X-Partoo-Signature-v1 uses
//                             (88 base64 chars; RFC 8032 pure Ed25519, like signer.h)
//
// A secret is 24 to 64 random bytes, shown to people as "whsec_" + base64 (standard alphabet,
// padded), the form the `standardwebhooks` libraries take. A receiver holding a subscription's
// secret can check v1; a replay to another subscription fails there (another secret), and the
// timestamp bounds replays in time (the libraries refuse more than 5 minutes off).
//
// Everything here is allocation-free except the secret text helpers; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "engine/signer.h"

namespace fanout::engine {

inline constexpr std::size_t kWebhookSecretMinBytes = 24;
inline constexpr std::size_t kWebhookSecretMaxBytes = 64;
inline constexpr std::size_t kWebhookSecretBytes = 32;  // what new_webhook_secret() draws
inline constexpr std::string_view kWebhookSecretPrefix = "whsec_";
// base64 of the 32-byte HMAC-SHA256.
inline constexpr std::size_t kHmacBase64Size = 44;
// The longest webhook-signature value: "v1,<44> v1a,<88>".
inline constexpr std::size_t kWebhookSignatureMaxSize =
    3 + kHmacBase64Size + 1 + 4 + Signer::kSignatureBase64Size;
// Unix seconds have 10 digits from 2001-09-09 to 2286-11-20: a Delivery keeps 12 bytes between
// its id and its body for "." + timestamp + ".", so the signed content is contiguous and is
// signed in place (Ed25519 cannot be fed in pieces without changing the algorithm).
inline constexpr std::size_t kWebhookTimestampDigits = 10;
inline constexpr std::size_t kWebhookGap = kWebhookTimestampDigits + 2;

// Writes base64(HMAC-SHA256(key, message)) to out[0..44), no NUL. Any key length.
void hmac_sha256_base64(std::span<const std::uint8_t> key, std::string_view message,
                        char* out) noexcept;

// Writes the webhook-signature value for the signed content `message` to `out` (room for
// kWebhookSignatureMaxSize chars, no NUL) and returns its length: "v1,<hmac>" when `v1` and
// `secret` is not empty, then (space-separated) "v1a,<ed25519>" when `v1a` and `signer` is not
// null. 0 when neither applies (then no Standard Webhooks header should be sent).
[[nodiscard]] std::size_t write_webhook_signature(bool v1, bool v1a,
                                                  std::span<const std::uint8_t> secret,
                                                  const Signer* signer, std::string_view message,
                                                  char* out) noexcept;

// kWebhookSecretBytes fresh random bytes (libsodium's randombytes_buf). Aborts, as libsodium
// does, when the system has no random source. The caller should wipe it when done.
[[nodiscard]] std::string new_webhook_secret();
// "whsec_" + base64 of `secret`.
[[nodiscard]] std::string encode_webhook_secret(std::string_view secret);
// The raw bytes of "whsec_<base64>" (the prefix is optional), or nullopt when the base64 is bad
// or the length is outside 24..64 bytes.
[[nodiscard]] std::optional<std::string> decode_webhook_secret(std::string_view text);

}  // namespace fanout::engine
