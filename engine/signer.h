// Ed25519 signing of delivery bodies: the X-Partoo-Signature-v1 header (docs/webhook-contract.md
// §4).
//
// The header value is the base64 (standard alphabet, with padding) of the 64-byte Ed25519
// signature (RFC 8032, pure Ed25519, no context, no prehash) of the exact body bytes sent. A
// Signer is built once from the operator's key and then signs each event's body once; every
// attempt of that event reuses the same 88 characters.
//
//   auto signer = Signer::from_pem(read_file("signing-key.pem"));
//   if (!signer) die(signer.error());
//   char header[Signer::kSignatureBase64Size];
//   signer->sign_base64(body, header);  // header holds 88 chars, no NUL
//
// Why libsodium: on this machine crypto_sign_detached signs a 600-byte body ~1.5x faster than
// BoringSSL's ED25519_sign (the gap closes for bodies of tens of KiB, where SHA-512 dominates;
// bench/engine/signer_bench.cc), and signing costs far more than sending a request.
// Ed25519 is deterministic, so both libraries produce the same bytes for the same key and body;
// tests/engine/signer_test.cc proves it against BoringSSL and the openssl command line.
//
// Key formats are the ones `openssl` reads and writes, so operators manage keys with it:
//   private: PKCS#8 PrivateKeyInfo, PEM "PRIVATE KEY" (`openssl genpkey -algorithm ed25519`);
//   public:  SubjectPublicKeyInfo, PEM "PUBLIC KEY" (`openssl pkey -in k.pem -pubout`).
//
// Threading: a Signer is immutable after construction; sign_base64() and the accessors may run
// on any number of threads at once. The factories may be called from any thread.
//
// Secrets: the only long-lived copy of the key is the Signer's own member, wiped by the
// destructor. Copying a Signer copies the secret (each copy wipes its own); a moved-from Signer
// still holds it until destroyed. Strings returned by private_key_pem() are the caller's to wipe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace fanout::engine {

class Signer {
 public:
  static constexpr std::size_t kSeedSize = 32;
  static constexpr std::size_t kPublicKeySize = 32;
  static constexpr std::size_t kSignatureSize = 64;
  // base64 of 64 bytes with padding: 4 * ceil(64 / 3).
  static constexpr std::size_t kSignatureBase64Size = 88;

  // A signer for the RFC 8032 private key `seed` (the 32 bytes a PKCS#8 Ed25519 key carries).
  // Fails only if libsodium cannot initialise (no usable random source on this system); the
  // error is a sentence for logs.
  [[nodiscard]] static tl::expected<Signer, std::string> from_seed(
      std::span<const std::uint8_t, kSeedSize> seed);

  // A signer for a PEM "PRIVATE KEY" holding an Ed25519 key in PKCS#8 form, exactly as
  // `openssl genpkey -algorithm ed25519` writes it (the 48-byte DER 30 2e 02 01 00 30 05 06 03
  // 2b 65 70 04 22 04 20 <seed>). Whitespace around the block and line breaks inside it are
  // ignored. Refused, with an English sentence naming the problem: no PEM block, another label
  // ("PUBLIC KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", ...), text after the block, bad
  // base64, a malformed or truncated DER structure, another algorithm (EC, RSA, X25519, Ed448:
  // the error names it), or an Ed25519 key in another PKCS#8 form (e.g. v2 with the public key).
  // `pem` is not kept. Decoded key bytes are wiped before returning.
  [[nodiscard]] static tl::expected<Signer, std::string> from_pem(std::string_view pem);

  // A signer for a fresh random key (libsodium's randombytes_buf). Aborts, as libsodium does,
  // if the system has no usable random source.
  [[nodiscard]] static Signer generate();

  Signer(const Signer&) = default;
  Signer(Signer&&) noexcept = default;
  Signer& operator=(const Signer&) = default;
  Signer& operator=(Signer&&) noexcept = default;
  ~Signer();

  // The RFC 8032 private key. Valid while this Signer lives.
  [[nodiscard]] std::span<const std::uint8_t, kSeedSize> seed() const noexcept;

  // The RFC 8032 public key receivers verify with. Valid while this Signer lives.
  [[nodiscard]] std::span<const std::uint8_t, kPublicKeySize> public_key() const noexcept;

  // The private key as PKCS#8 PEM, byte for byte what `openssl genpkey` writes: BEGIN line,
  // base64 in 64-column lines, END line, each ending in '\n'. Allocates; holds the secret.
  [[nodiscard]] std::string private_key_pem() const;

  // The public key as SubjectPublicKeyInfo PEM ("PUBLIC KEY"), byte for byte what
  // `openssl pkey -pubout` writes; what `fanoutd keys public` prints. Allocates.
  [[nodiscard]] std::string public_key_pem() const;

  // Writes the X-Partoo-Signature-v1 value for `body` to out[0..88): base64 (standard
  // alphabet, '=' padding) of the Ed25519 signature. No NUL is written; `out` must have room for
  // kSignatureBase64Size chars. Allocation-free; safe to call concurrently.
  void sign_base64(std::string_view body, char* out) const noexcept;

  // The 64 signature bytes behind a value sign_base64() wrote, and back: what a delivery keeps
  // while it waits for a retry (engine/worker.h WaitingRetry) is the raw form. For the values
  // sign_base64() writes, never fails; anything else yields zeros.
  static void signature_from_base64(const char (&b64)[kSignatureBase64Size],
                                    std::uint8_t (&raw)[kSignatureSize]) noexcept;
  // Writes kSignatureBase64Size chars to `b64`, no NUL (as sign_base64()).
  static void signature_to_base64(const std::uint8_t (&raw)[kSignatureSize], char* b64) noexcept;

  // True iff `signature_b64` is exactly 88 chars of canonical base64 decoding to a valid
  // Ed25519 signature of `body` under `public_key` (libsodium's verify, which also refuses
  // non-canonical S and small-order keys). For receivers and tests; safe from any thread.
  [[nodiscard]] static bool verify_base64(std::span<const std::uint8_t, kPublicKeySize> public_key,
                                          std::string_view body,
                                          std::string_view signature_b64) noexcept;

 private:
  Signer() = default;

  // libsodium's secret key layout: seed (32 bytes) then public key (32 bytes).
  std::array<std::uint8_t, kSeedSize + kPublicKeySize> secret_{};
};

}  // namespace fanout::engine
