// Subscriptions ("webhook configurations", docs/webhook-contract.md §1) and their validation.
//
// A subscription says: deliver events of `event_type` for organisation `org_id` to `url`, with
// up to five custom `X-` headers. validate() turns what an operator asked for (SubscriptionSpec)
// into a Subscription whose every field obeys the contract, or into the full list of violations,
// each naming its field, a machine-readable rule and a human message. Nothing is half-applied:
// either every field is valid and a Subscription comes back, or nothing does.
//
// Threading: every function here is pure and may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "routing/catalogue.h"

namespace fanout::routing {

inline constexpr std::size_t kMaxUrlBytes = 2048;
inline constexpr std::size_t kMaxCustomHeaders = 5;
inline constexpr std::size_t kMaxHeaderKeyLength = 128;    // characters (keys are ASCII)
inline constexpr std::size_t kMaxHeaderValueLength = 512;  // characters (UTF-8 code points)

enum class Scheme : std::uint8_t { kHttps, kHttp };

struct Header {
  std::string name;
  std::string value;
  friend bool operator==(const Header&, const Header&) = default;
};

// A URL split into what delivery needs: the origin (scheme, host, port) and the request target.
struct UrlParts {
  Scheme scheme = Scheme::kHttps;
  std::string host;        // lower-cased; an IPv6 literal without its brackets
  std::uint16_t port = 0;  // the explicit port, else 443 (https) or 80 (http)
  std::string target;      // path and query as given, "/" when the URL has no path
  friend bool operator==(const UrlParts&, const UrlParts&) = default;
};

// Standard Webhooks signing of one subscription's deliveries (docs/webhook-contract.md §8): which
// entries its `webhook-signature` header carries. kDefault follows the engine's own setting
// (EngineOptions::standard_webhooks); kOff sends no Standard Webhooks headers at all; kV1a an
// Ed25519 signature with the engine's key; kV1 an HMAC-SHA256 with the subscription's
// webhook_secret; kBoth both. X-Partoo-Signature-v1 is sent whatever this says.
enum class WebhookSigning : std::uint8_t { kDefault, kOff, kV1a, kV1, kBoth };
// "default", "off", "v1a", "v1", "both"; parse_webhook_signing() takes exactly those.
[[nodiscard]] std::string_view to_string(WebhookSigning signing) noexcept;
[[nodiscard]] std::optional<WebhookSigning> parse_webhook_signing(std::string_view s) noexcept;

// What an operator asks for: the body of a create call plus the organisation. Not validated.
struct SubscriptionSpec {
  std::int64_t org_id = 0;
  std::string event_type;
  std::string url;
  std::vector<Header> custom_headers;
};

// A validated subscription. Every field obeys docs/webhook-contract.md §1; only validate() makes
// one from operator input (the store may rebuild one from rows it validated before).
struct Subscription {
  std::int64_t id = 0;  // assigned by the store, never reused; 0 until stored
  std::int64_t org_id = 0;
  EventTypeId event_type = 0;
  std::string url;                     // exactly as given
  UrlParts parts;                      // parsed from url
  std::vector<Header> custom_headers;  // in the order given, names as given
  std::int64_t created_at_us = 0;      // microseconds since the Unix epoch (UTC)
  std::int64_t updated_at_us = 0;
  // Standard Webhooks (docs/webhook-contract.md §8); not part of validate(): set by the store or
  // the API.
  WebhookSigning signing = WebhookSigning::kDefault;
  // The HMAC-SHA256 key of `v1` signatures, raw bytes (24 to 64); empty: none, so no `v1`.
  std::string webhook_secret;
  friend bool operator==(const Subscription&, const Subscription&) = default;
};

// One rule of docs/webhook-contract.md §1 each. rule_name() gives the stable snake_case code.
enum class Rule : std::uint8_t {
  kOrgIdNotPositive,         // org_id must be an integer > 0
  kEventTypeUnknown,         // event_type not in the catalogue
  kUrlEmpty,                 // url missing or empty
  kUrlTooLong,               // more than 2048 bytes
  kUrlBadCharacter,          // space, control or non-ASCII byte (must be percent-encoded)
  kUrlMalformed,             // not scheme://authority[/path][?query]
  kUrlBadScheme,             // scheme other than https (or http in insecure mode)
  kUrlInsecure,              // http:// while insecure mode is off
  kUrlUserInfo,              // user:password@ part present
  kUrlNoHost,                // empty host
  kUrlBadHost,               // host is not a DNS name, IPv4 or bracketed IPv6 literal
  kUrlBadPort,               // port not a decimal number in 1..65535
  kUrlFragment,              // #fragment present (it is never sent)
  kHeadersTooMany,           // more than 5 custom headers
  kHeaderKeyEmpty,           // empty key
  kHeaderKeyNoXPrefix,       // key does not start with X- (case-insensitive)
  kHeaderKeyReservedPrefix,  // key starts with X-Partoo (case-insensitive)
  kHeaderKeyTooLong,         // more than 128 characters
  kHeaderKeyForbiddenChar,   // one of: space ( ) < > @ , ; : \ " / [ ] ? = { }
  kHeaderKeyControlChar,     // byte < 0x20 or 0x7F
  kHeaderKeyNonAscii,        // byte >= 0x80
  kHeaderKeyDuplicate,       // two keys equal when compared case-insensitively
  kHeaderValueTooLong,       // more than 512 characters
  kHeaderValueControlChar,   // byte < 0x20 or 0x7F
  kHeaderValueBadUtf8,       // not valid UTF-8
  kHeaderValueEdgeSpace,     // leading or trailing space (HTTP would strip it)
};

// Stable machine-readable code of a rule, e.g. "header_key_forbidden_char".
[[nodiscard]] std::string_view rule_name(Rule rule) noexcept;

struct Violation {
  std::string field;  // "org_id", "event_type", "url" or "custom_headers"
  Rule rule = Rule::kUrlMalformed;
  std::string message;  // an English sentence naming the field, the rule and the culprit
  friend bool operator==(const Violation&, const Violation&) = default;
};

struct ValidationOptions {
  // Accept http:// URLs (cleartext). Only for local tests and benchmarks (docs/webhook-contract.md
  // §1).
  bool allow_insecure_http = false;
};

// Validates every field of `spec` and returns the Subscription (id and timestamps left 0), or
// every violation found, in field order org_id, event_type, url, custom_headers.
[[nodiscard]] tl::expected<Subscription, std::vector<Violation>> validate(
    const SubscriptionSpec& spec, const EventCatalogue& catalogue,
    const ValidationOptions& options = {});

// The URL rules alone (for partial updates). Returns the parts, or the violations (field "url").
[[nodiscard]] tl::expected<UrlParts, std::vector<Violation>> validate_url(
    std::string_view url, const ValidationOptions& options = {});

// The custom-header rules alone (for partial updates). Empty when every rule holds; otherwise
// the violations (field "custom_headers"), at most one per (key, rule).
[[nodiscard]] std::vector<Violation> validate_custom_headers(std::span<const Header> headers);

}  // namespace fanout::routing
