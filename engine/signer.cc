#include "engine/signer.h"

#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <utility>
#include <vector>

namespace fanout::engine {
namespace {

static_assert(Signer::kSeedSize == crypto_sign_SEEDBYTES);
static_assert(Signer::kPublicKeySize == crypto_sign_PUBLICKEYBYTES);
static_assert(Signer::kSignatureSize == crypto_sign_BYTES);
static_assert(Signer::kSeedSize + Signer::kPublicKeySize == crypto_sign_SECRETKEYBYTES);

constexpr std::size_t base64_size(std::size_t n) {
  return (n + 2) / 3 * 4;
}
static_assert(Signer::kSignatureBase64Size == base64_size(Signer::kSignatureSize));

// The only DER forms accepted and written (RFC 8410 §7 and §4): everything but the key bytes is
// fixed, so no general ASN.1 code is needed on the success path.
constexpr std::uint8_t kPkcs8Prefix[] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                         0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
constexpr std::uint8_t kSpkiPrefix[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                        0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
constexpr std::uint8_t kEd25519Oid[] = {0x2b, 0x65, 0x70};  // 1.3.101.112
constexpr std::size_t kPkcs8Size = sizeof kPkcs8Prefix + Signer::kSeedSize;
constexpr std::size_t kSpkiSize = sizeof kSpkiPrefix + Signer::kPublicKeySize;

constexpr std::string_view kPrivateLabel = "PRIVATE KEY";
constexpr std::string_view kPublicLabel = "PUBLIC KEY";
constexpr std::string_view kWhitespace = " \t\r\n";
constexpr std::string_view kHowToMake = "; make one with `openssl genpkey -algorithm ed25519`";

// sodium_init() is thread-safe and idempotent; the static only saves repeating it.
bool sodium_ready() noexcept {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

// libsodium is never handed a null message pointer, even for an empty body.
const std::uint8_t* bytes_of(std::string_view s) noexcept {
  static constexpr std::uint8_t kEmpty[1] = {0};
  return s.empty() ? kEmpty : reinterpret_cast<const std::uint8_t*>(s.data());
}

tl::unexpected<std::string> refuse(std::string_view why) {
  return tl::unexpected(std::string(why));
}

// Reads one DER element with tag `tag` off the front of `in` (definite lengths up to 65535, the
// only ones a key of any common algorithm needs) and advances past it.
bool read_der(std::span<const std::uint8_t>& in, std::uint8_t tag,
              std::span<const std::uint8_t>& contents) {
  if (in.size() < 2 || in[0] != tag) return false;
  std::size_t length = in[1];
  std::size_t header = 2;
  if (length == 0x81) {
    if (in.size() < 3) return false;
    length = in[2];
    header = 3;
  } else if (length == 0x82) {
    if (in.size() < 4) return false;
    length = std::size_t{in[2]} << 8 | in[3];
    header = 4;
  } else if (length >= 0x80) {
    return false;
  }
  if (in.size() - header < length) return false;
  contents = in.subspan(header, length);
  in = in.subspan(header + length);
  return true;
}

// "1.2.840.10045.2.1" for the DER contents of an OBJECT IDENTIFIER; empty if malformed.
std::string dotted_oid(std::span<const std::uint8_t> oid) {
  std::string out;
  std::uint64_t arc = 0;
  bool first = true;
  for (std::size_t i = 0; i < oid.size(); ++i) {
    if (arc > (UINT64_MAX >> 7)) return {};
    arc = arc << 7 | (oid[i] & 0x7fU);
    if (oid[i] & 0x80U) {
      if (i + 1 == oid.size()) return {};
      continue;
    }
    if (first) {
      const std::uint64_t top = arc < 40 ? 0 : arc < 80 ? 1 : 2;
      out = std::to_string(top) + "." + std::to_string(arc - 40 * top);
      first = false;
    } else {
      out += "." + std::to_string(arc);
    }
    arc = 0;
  }
  return out;
}

// What an operator most likely fed us instead of an Ed25519 key.
std::string describe_algorithm(std::span<const std::uint8_t> oid) {
  const std::string dotted = dotted_oid(oid);
  static constexpr std::pair<std::string_view, std::string_view> kKnown[] = {
      {"1.2.840.10045.2.1", "an EC key (id-ecPublicKey)"},
      {"1.2.840.113549.1.1.1", "an RSA key (rsaEncryption)"},
      {"1.2.840.113549.1.1.10", "an RSA-PSS key"},
      {"1.2.840.10040.4.1", "a DSA key"},
      {"1.3.101.110", "an X25519 key"},
      {"1.3.101.111", "an X448 key"},
      {"1.3.101.113", "an Ed448 key"},
  };
  for (const auto& [known, name] : kKnown) {
    if (dotted == known) return std::string(name) + ", algorithm OID " + dotted;
  }
  if (dotted.empty()) return "a key with a malformed algorithm OID";
  return "a key with algorithm OID " + dotted;
}

// PEM text for `der` as OpenSSL writes it: 64-column base64 lines. The base64 scratch copy is
// wiped, since `der` may hold a secret.
std::string pem_encode(std::string_view label, std::span<const std::uint8_t> der) {
  std::string b64(base64_size(der.size()) + 1, '\0');  // +1: sodium writes a NUL
  sodium_bin2base64(b64.data(), b64.size(), der.data(), der.size(), sodium_base64_VARIANT_ORIGINAL);
  const std::string_view text(b64.data(), b64.size() - 1);
  std::string out;
  out.reserve(2 * label.size() + text.size() + text.size() / 64 + 32);
  out.append("-----BEGIN ").append(label).append("-----\n");
  for (std::size_t i = 0; i < text.size(); i += 64) {
    out.append(text.substr(i, 64)).push_back('\n');
  }
  out.append("-----END ").append(label).append("-----\n");
  sodium_memzero(b64.data(), b64.size());
  return out;
}

// Wipes a scratch buffer that held key material, whatever path leaves the scope.
struct WipeOnExit {
  std::vector<std::uint8_t>& buffer;
  ~WipeOnExit() { sodium_memzero(buffer.data(), buffer.size()); }
};

}  // namespace

tl::expected<Signer, std::string> Signer::from_seed(std::span<const std::uint8_t, kSeedSize> seed) {
  if (!sodium_ready()) return refuse("libsodium failed to initialise (sodium_init)");
  Signer signer;
  std::uint8_t public_key[kPublicKeySize];
  // Writes secret_ = seed || public key, the layout crypto_sign_detached() expects.
  crypto_sign_seed_keypair(public_key, signer.secret_.data(), seed.data());
  return signer;
}

tl::expected<Signer, std::string> Signer::from_pem(std::string_view pem) {
  constexpr std::string_view kBegin = "-----BEGIN ";
  constexpr std::string_view kDashes = "-----";
  const std::size_t start = pem.find_first_not_of(kWhitespace);
  if (start == std::string_view::npos) return refuse("the key file is empty");
  pem.remove_prefix(start);
  if (!pem.starts_with(kBegin)) {
    return refuse("not a PEM key: the text does not start with a '-----BEGIN ...-----' line");
  }
  pem.remove_prefix(kBegin.size());
  const std::size_t label_end = pem.find(kDashes);
  if (label_end == std::string_view::npos || label_end > pem.find('\n')) {
    return refuse("not a PEM key: malformed '-----BEGIN ...-----' line");
  }
  const std::string_view label = pem.substr(0, label_end);
  if (label != kPrivateLabel) {
    const std::string why = "the PEM label is '" + std::string(label.substr(0, 40)) +
                            "', expected '" + std::string(kPrivateLabel) +
                            "' (an Ed25519 private key in PKCS#8 form)";
    if (label == "ENCRYPTED PRIVATE KEY") {
      return refuse(why +
                    "; encrypted keys are not supported, decrypt it with "
                    "`openssl pkey -in KEY.pem -out PLAIN.pem`");
    }
    return refuse(why + std::string(kHowToMake));
  }
  pem.remove_prefix(label_end + kDashes.size());
  const std::string end_line = "-----END " + std::string(kPrivateLabel) + "-----";
  const std::size_t end = pem.find(end_line);
  if (end == std::string_view::npos) return refuse("the PEM block has no '" + end_line + "' line");
  const std::string_view body = pem.substr(0, end);
  if (pem.substr(end + end_line.size()).find_first_not_of(kWhitespace) != std::string_view::npos) {
    return refuse("unexpected text after the PEM '" + end_line + "' line (one key per file)");
  }

  // Sized for the base64 text, so a longer foreign key decodes and can be named below.
  std::vector<std::uint8_t> der(body.size() / 4 * 3 + 3);
  const WipeOnExit wipe{der};
  std::size_t der_size = 0;
  // A null end pointer makes the decode strict: every character must be base64, padding
  // included, or whitespace (kWhitespace views a literal, so its data() is NUL-terminated).
  if (sodium_base642bin(der.data(), der.size(), body.data(), body.size(), kWhitespace.data(),
                        &der_size, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    return refuse("the PEM body is not valid base64 (corrupted or truncated key file)");
  }

  std::span<const std::uint8_t> all(der.data(), der_size);
  std::span<const std::uint8_t> info, version, algorithm, oid;
  if (!read_der(all, 0x30, info) || !all.empty() || !read_der(info, 0x02, version) ||
      !read_der(info, 0x30, algorithm) || !read_der(algorithm, 0x06, oid)) {
    return refuse("the PEM body is not a PKCS#8 PrivateKeyInfo (truncated or malformed DER, " +
                  std::to_string(der_size) + " bytes)");
  }
  if (!std::ranges::equal(oid, kEd25519Oid)) {
    return refuse("the key is " + describe_algorithm(oid) + ", not Ed25519 (OID 1.3.101.112)" +
                  std::string(kHowToMake));
  }
  if (der_size != kPkcs8Size ||
      !std::equal(std::begin(kPkcs8Prefix), std::end(kPkcs8Prefix), der.begin())) {
    return refuse("unsupported Ed25519 PKCS#8 form: " + std::to_string(der_size) +
                  " bytes of DER, expected the 48-byte form `openssl genpkey -algorithm ed25519` "
                  "writes");
  }
  return from_seed(
      std::span<const std::uint8_t, kSeedSize>(der.data() + sizeof kPkcs8Prefix, kSeedSize));
}

Signer Signer::generate() {
  if (!sodium_ready()) std::abort();  // what randombytes_buf() would do without a random source
  std::uint8_t seed[kSeedSize];
  randombytes_buf(seed, sizeof seed);
  Signer signer = *from_seed(seed);
  sodium_memzero(seed, sizeof seed);
  return signer;
}

Signer::~Signer() {
  sodium_memzero(secret_.data(), secret_.size());
}

std::span<const std::uint8_t, Signer::kSeedSize> Signer::seed() const noexcept {
  return std::span<const std::uint8_t, kSeedSize>(secret_.data(), kSeedSize);
}

std::span<const std::uint8_t, Signer::kPublicKeySize> Signer::public_key() const noexcept {
  return std::span<const std::uint8_t, kPublicKeySize>(secret_.data() + kSeedSize, kPublicKeySize);
}

std::string Signer::private_key_pem() const {
  std::vector<std::uint8_t> der(kPkcs8Size);
  const WipeOnExit wipe{der};
  std::copy(std::begin(kPkcs8Prefix), std::end(kPkcs8Prefix), der.begin());
  std::ranges::copy(seed(), der.begin() + sizeof kPkcs8Prefix);
  return pem_encode(kPrivateLabel, der);
}

std::string Signer::public_key_pem() const {
  std::uint8_t der[kSpkiSize];
  std::copy(std::begin(kSpkiPrefix), std::end(kSpkiPrefix), der);
  std::ranges::copy(public_key(), der + sizeof kSpkiPrefix);
  return pem_encode(kPublicLabel, der);
}

void Signer::sign_base64(std::string_view body, char* out) const noexcept {
  std::uint8_t signature[kSignatureSize];
  // Cannot fail: the secret key is well formed by construction.
  crypto_sign_detached(signature, nullptr, bytes_of(body), body.size(), secret_.data());
  signature_to_base64(signature, out);
}

void Signer::signature_from_base64(const char (&b64)[kSignatureBase64Size],
                                   std::uint8_t (&raw)[kSignatureSize]) noexcept {
  std::size_t size = 0;
  if (sodium_base642bin(raw, kSignatureSize, b64, kSignatureBase64Size, nullptr, &size, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      size != kSignatureSize) {
    std::memset(raw, 0, kSignatureSize);
  }
}

void Signer::signature_to_base64(const std::uint8_t (&raw)[kSignatureSize], char* b64) noexcept {
  char text[kSignatureBase64Size + 1];  // sodium always NUL-terminates; the header has no NUL
  sodium_bin2base64(text, sizeof text, raw, kSignatureSize, sodium_base64_VARIANT_ORIGINAL);
  std::memcpy(b64, text, kSignatureBase64Size);
}

bool Signer::verify_base64(std::span<const std::uint8_t, kPublicKeySize> public_key,
                           std::string_view body, std::string_view signature_b64) noexcept {
  if (signature_b64.size() != kSignatureBase64Size || !sodium_ready()) return false;
  std::uint8_t signature[kSignatureSize];
  std::size_t size = 0;
  if (sodium_base642bin(signature, sizeof signature, signature_b64.data(), signature_b64.size(),
                        nullptr, &size, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      size != kSignatureSize) {
    return false;
  }
  return crypto_sign_verify_detached(signature, bytes_of(body), body.size(), public_key.data()) ==
         0;
}

}  // namespace fanout::engine
