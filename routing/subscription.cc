// Subscription validation (routing/subscription.h): validate() over every field, the rules'
// names, and the quoting every message uses. The URL rules are in subscription_url.cc, the
// custom-header rules in subscription_headers.cc; what the three share, in subscription_checks.h.
#include "routing/subscription.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routing/subscription_checks.h"

namespace fanout::routing {

namespace detail {

namespace {

// Culprits are quoted in messages; past this many bytes they are cut.
constexpr std::size_t kMaxQuotedBytes = 64;
// A catalogue this small is listed in full when an event type is unknown; a larger one is not.
constexpr std::size_t kMaxListedEventTypes = 16;

void append_hex_byte(std::string& out, unsigned char b) {
  out += "\\x";
  out += "0123456789ABCDEF"[b >> 4];
  out += "0123456789ABCDEF"[b & 0x0F];
}

}  // namespace

std::string quoted(std::string_view s) {
  std::string out = "\"";
  const std::string_view shown = s.substr(0, kMaxQuotedBytes);
  for (char c : shown) {
    const unsigned char b = byte_of(c);
    if (b < 0x20 || b >= 0x7F) {
      append_hex_byte(out, b);
    } else {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
  }
  out += '"';
  if (shown.size() < s.size()) out += "...";
  return out;
}

std::string shown_byte(unsigned char b) {
  std::string out;
  if (b < 0x20 || b >= 0x7F) {
    append_hex_byte(out, b);
  } else {
    out += '\'';
    out += static_cast<char>(b);
    out += '\'';
    if (b == ' ') out += " (space)";
  }
  return out;
}

namespace {

void check_event_type(std::string_view name, const EventCatalogue& catalogue,
                      std::vector<Violation>& out) {
  std::string message = name.empty() ? std::string("event_type is empty")
                                     : "event_type " + quoted(name) + " is not in the catalogue";
  if (catalogue.size() <= kMaxListedEventTypes) {
    message += "; known event types: ";
    const std::vector<std::string_view> names = catalogue.names();
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (i > 0) message += ", ";
      message += names[i];
    }
  }
  add(out, kFieldEventType, Rule::kEventTypeUnknown, std::move(message));
}

}  // namespace

}  // namespace detail

std::string_view rule_name(Rule rule) noexcept {
  switch (rule) {
    case Rule::kOrgIdNotPositive:
      return "org_id_not_positive";
    case Rule::kEventTypeUnknown:
      return "event_type_unknown";
    case Rule::kUrlEmpty:
      return "url_empty";
    case Rule::kUrlTooLong:
      return "url_too_long";
    case Rule::kUrlBadCharacter:
      return "url_bad_character";
    case Rule::kUrlMalformed:
      return "url_malformed";
    case Rule::kUrlBadScheme:
      return "url_bad_scheme";
    case Rule::kUrlInsecure:
      return "url_insecure";
    case Rule::kUrlUserInfo:
      return "url_user_info";
    case Rule::kUrlNoHost:
      return "url_no_host";
    case Rule::kUrlBadHost:
      return "url_bad_host";
    case Rule::kUrlBadPort:
      return "url_bad_port";
    case Rule::kUrlFragment:
      return "url_fragment";
    case Rule::kHeadersTooMany:
      return "headers_too_many";
    case Rule::kHeaderKeyEmpty:
      return "header_key_empty";
    case Rule::kHeaderKeyNoXPrefix:
      return "header_key_no_x_prefix";
    case Rule::kHeaderKeyReservedPrefix:
      return "header_key_reserved_prefix";
    case Rule::kHeaderKeyTooLong:
      return "header_key_too_long";
    case Rule::kHeaderKeyForbiddenChar:
      return "header_key_forbidden_char";
    case Rule::kHeaderKeyControlChar:
      return "header_key_control_char";
    case Rule::kHeaderKeyNonAscii:
      return "header_key_non_ascii";
    case Rule::kHeaderKeyDuplicate:
      return "header_key_duplicate";
    case Rule::kHeaderValueTooLong:
      return "header_value_too_long";
    case Rule::kHeaderValueControlChar:
      return "header_value_control_char";
    case Rule::kHeaderValueBadUtf8:
      return "header_value_bad_utf8";
    case Rule::kHeaderValueEdgeSpace:
      return "header_value_edge_space";
  }
  return "unknown_rule";
}

tl::expected<Subscription, std::vector<Violation>> validate(const SubscriptionSpec& spec,
                                                            const EventCatalogue& catalogue,
                                                            const ValidationOptions& options) {
  std::vector<Violation> violations;
  if (spec.org_id <= 0) {
    detail::add(violations, detail::kFieldOrgId, Rule::kOrgIdNotPositive,
                "org_id must be a positive integer; got " + std::to_string(spec.org_id));
  }
  const std::optional<EventTypeId> event_type = catalogue.find(spec.event_type);
  if (!event_type) detail::check_event_type(spec.event_type, catalogue, violations);
  UrlParts parts;
  detail::check_url(spec.url, options, parts, violations);
  detail::check_headers(spec.custom_headers, violations);
  if (!violations.empty()) return tl::unexpected(std::move(violations));

  Subscription sub;
  sub.org_id = spec.org_id;
  sub.event_type = *event_type;
  sub.url = spec.url;
  sub.parts = std::move(parts);
  sub.custom_headers = spec.custom_headers;
  return sub;
}

std::string_view to_string(WebhookSigning signing) noexcept {
  switch (signing) {
    case WebhookSigning::kDefault:
      return "default";
    case WebhookSigning::kOff:
      return "off";
    case WebhookSigning::kV1a:
      return "v1a";
    case WebhookSigning::kV1:
      return "v1";
    case WebhookSigning::kBoth:
      return "both";
  }
  return "default";
}

std::optional<WebhookSigning> parse_webhook_signing(std::string_view s) noexcept {
  for (const auto v : {WebhookSigning::kDefault, WebhookSigning::kOff, WebhookSigning::kV1a,
                       WebhookSigning::kV1, WebhookSigning::kBoth}) {
    if (s == to_string(v)) return v;
  }
  return std::nullopt;
}

}  // namespace fanout::routing
