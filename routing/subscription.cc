#include "routing/subscription.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <utility>

namespace fanout::routing {

namespace {

constexpr std::string_view kFieldOrgId = "org_id";
constexpr std::string_view kFieldEventType = "event_type";
constexpr std::string_view kFieldUrl = "url";
constexpr std::string_view kFieldHeaders = "custom_headers";

constexpr std::size_t kMaxDnsNameLength = 253;
constexpr std::size_t kMaxDnsLabelLength = 63;
constexpr std::uint32_t kMaxPort = 65535;
constexpr std::uint16_t kHttpsPort = 443;
constexpr std::uint16_t kHttpPort = 80;
// Culprits are quoted in messages; past this many bytes they are cut, so a 2 KiB URL or key does
// not turn one violation into a wall of text.
constexpr std::size_t kMaxQuotedBytes = 64;
// A catalogue this small is listed in full when an event type is unknown; a larger one is not.
constexpr std::size_t kMaxListedEventTypes = 16;
// Up to this many headers, duplicates are found pairwise without allocating; beyond it (already
// an error) by sorting, so a request with thousands of headers cannot cost quadratic time.
constexpr std::size_t kPairwiseDuplicateLimit = 8;

constexpr std::string_view kForbiddenKeyChars = " ()<>@,;:\\\"/[]?={}";

unsigned char byte_of(char c) noexcept {
  return static_cast<unsigned char>(c);
}

bool is_control(unsigned char b) noexcept {
  return b < 0x20 || b == 0x7F;
}

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_hex_digit(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

char to_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return to_lower(x) == to_lower(y);
         });
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool iless(std::string_view a, std::string_view b) noexcept {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return byte_of(to_lower(x)) < byte_of(to_lower(y));
  });
}

void append_hex_byte(std::string& out, unsigned char b) {
  out += "\\x";
  out += "0123456789ABCDEF"[b >> 4];
  out += "0123456789ABCDEF"[b & 0x0F];
}

// `s` in double quotes, with unprintable bytes as \xNN so a message never carries raw control or
// non-UTF-8 bytes into logs or JSON.
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

// One byte as a reader should see it: 'c' when printable, \xNN otherwise.
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

void add(std::vector<Violation>& out, std::string_view field, Rule rule, std::string message) {
  out.push_back(Violation{std::string(field), rule, std::move(message)});
}

// ---------------------------------------------------------------------------------------------
// URL
// ---------------------------------------------------------------------------------------------

bool is_scheme(std::string_view s) noexcept {
  // RFC 3986 §3.1; anything else before "://" means the URL lacks a scheme altogether.
  if (s.empty() || !is_alpha(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
  });
}

// inet_pton wants a NUL-terminated string; hosts are short, so a stack copy does.
bool parses_as_address(int family, std::string_view text) noexcept {
  std::array<char, 64> buf{};
  if (text.size() >= buf.size()) return false;
  std::copy(text.begin(), text.end(), buf.begin());
  std::array<unsigned char, 16> addr{};
  return inet_pton(family, buf.data(), addr.data()) == 1;
}

// WHATWG's "ends in a number": resolvers (inet_aton) read such hosts as IPv4 in odd forms
// ("1.2.3" is 1.2.0.3, "0x7f.1" is 127.0.0.1), so they must be strict dotted IPv4 or nothing.
bool ends_in_number(std::string_view host) noexcept {
  const auto dot = host.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (std::all_of(last.begin(), last.end(), is_digit)) return true;
  return last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') &&
         std::all_of(last.begin() + 2, last.end(), is_hex_digit);
}

// Why `host` (not bracketed) is neither a DNS name nor an IPv4 literal; empty when it is fine.
std::string host_problem(std::string_view host) {
  if (ends_in_number(host)) {
    if (parses_as_address(AF_INET, host)) return {};
    return "ends in a number but is not a dotted IPv4 address of four decimal numbers from 0 to "
           "255";
  }
  if (host.size() > kMaxDnsNameLength) return "is longer than 253 characters";
  if (host.back() == '.') return "ends with a dot";
  std::size_t start = 0;
  while (start <= host.size()) {
    auto end = host.find('.', start);
    if (end == std::string_view::npos) end = host.size();
    const std::string_view label = host.substr(start, end - start);
    if (label.empty()) return "has an empty label (two dots in a row, or a leading dot)";
    if (label.size() > kMaxDnsLabelLength) return "has a label longer than 63 characters";
    const auto bad = std::find_if(label.begin(), label.end(),
                                  [](char c) { return !is_alpha(c) && !is_digit(c) && c != '-'; });
    if (bad != label.end()) {
      return "contains the character " + shown_byte(byte_of(*bad)) +
             "; host names use only letters, digits, '-' and '.'";
    }
    if (label.front() == '-' || label.back() == '-')
      return "has a label starting or ending with '-'";
    start = end + 1;
  }
  return {};
}

void check_ipv6_host(std::string_view literal, std::vector<Violation>& out) {
  if (literal.find('%') != std::string_view::npos) {
    // A zone names an interface of the sending machine; it means nothing in a subscription.
    add(out, kFieldUrl, Rule::kUrlBadHost,
        "url host " + quoted("[" + std::string(literal) + "]") +
            " carries an IPv6 zone id ('%'); zone ids are not allowed in webhook URLs");
  } else if (!parses_as_address(AF_INET6, literal)) {
    add(out, kFieldUrl, Rule::kUrlBadHost,
        "url host " + quoted("[" + std::string(literal) + "]") + " is not a valid IPv6 address");
  }
}

void check_port(std::string_view port, std::vector<Violation>& out, std::uint16_t& value) {
  if (port.empty()) {
    add(out, kFieldUrl, Rule::kUrlBadPort,
        "url has ':' after the host but no port number; remove the ':' or add a port from 1 to "
        "65535");
    return;
  }
  std::uint32_t n = 0;
  bool ok = std::all_of(port.begin(), port.end(), is_digit);
  for (std::size_t i = 0; ok && i < port.size(); ++i) {
    n = n * 10 + static_cast<std::uint32_t>(port[i] - '0');
    ok = n <= kMaxPort;  // checked every digit, so n never overflows
  }
  if (!ok || n == 0) {
    add(out, kFieldUrl, Rule::kUrlBadPort,
        "url port " + quoted(port) + " is not a decimal number from 1 to 65535");
    return;
  }
  value = static_cast<std::uint16_t>(n);
}

// Appends the violations of `url` to `out`; `parts` is meaningful only when none were added.
void check_url(std::string_view url, const ValidationOptions& options, UrlParts& parts,
               std::vector<Violation>& out) {
  if (url.empty()) {
    add(out, kFieldUrl, Rule::kUrlEmpty, "url is empty; give the https:// URL to deliver to");
    return;
  }
  if (url.size() > kMaxUrlBytes) {
    add(out, kFieldUrl, Rule::kUrlTooLong,
        "url is " + std::to_string(url.size()) + " bytes long; at most 2048 are allowed");
  }
  for (std::size_t i = 0; i < url.size(); ++i) {
    const unsigned char b = byte_of(url[i]);
    if (b < 0x21 || b > 0x7E) {
      // Past such a byte the structure cannot be trusted; more violations would only be noise.
      add(out, kFieldUrl, Rule::kUrlBadCharacter,
          "url contains " + shown_byte(b) + " at byte offset " + std::to_string(i) +
              "; spaces, control characters and non-ASCII characters must be percent-encoded");
      return;
    }
  }

  std::string_view rest = url;
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) {
    add(out, kFieldUrl, Rule::kUrlFragment,
        "url has the fragment " + quoted(rest.substr(hash)) +
            "; fragments are never sent to the receiver, remove it");
    rest = rest.substr(0, hash);
  }

  const auto sep = rest.find("://");
  if (sep == std::string_view::npos || !is_scheme(rest.substr(0, sep))) {
    // The URL is not quoted: without a scheme, a "user:password@" part cannot be told apart.
    add(out, kFieldUrl, Rule::kUrlMalformed,
        std::string(sep == std::string_view::npos ? "url has no \"://\""
                                                  : "url has no valid scheme before \"://\"") +
            "; it must have the form https://host[:port][/path][?query]");
    return;
  }
  const std::string_view scheme = rest.substr(0, sep);
  if (iequals(scheme, "https")) {
    parts.scheme = Scheme::kHttps;
  } else if (iequals(scheme, "http")) {
    parts.scheme = Scheme::kHttp;
    if (!options.allow_insecure_http) {
      add(out, kFieldUrl, Rule::kUrlInsecure,
          "url uses http://, which sends events unencrypted; https:// is required (insecure "
          "mode, which accepts http://, is for local tests only)");
    }
  } else {
    add(out, kFieldUrl, Rule::kUrlBadScheme,
        "url scheme " + quoted(scheme) + " is not supported; use https://");
  }
  // Scheme problems do not stop here: the rest of the URL is still worth checking.

  rest = rest.substr(sep + 3);
  const auto authority_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, authority_end);
  const std::string_view path_and_query =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);

  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    // The user-info is not quoted: it is usually a password.
    add(out, kFieldUrl, Rule::kUrlUserInfo,
        "url contains user information (\"user:password@\"); credentials must not be put in the "
        "URL, send them in a custom X- header instead");
    authority = authority.substr(at + 1);
  }

  std::string_view host;
  std::string_view port;
  bool has_port = false;
  bool bracketed = false;
  bool host_parsed = true;
  if (!authority.empty() && authority.front() == '[') {
    bracketed = true;
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      add(out, kFieldUrl, Rule::kUrlBadHost,
          "url host " + quoted(authority) + " opens '[' but never closes it with ']'");
      host_parsed = false;
    } else {
      host = authority.substr(1, close - 1);
      const std::string_view after = authority.substr(close + 1);
      if (!after.empty() && after.front() == ':') {
        has_port = true;
        port = after.substr(1);
      } else if (!after.empty()) {
        add(out, kFieldUrl, Rule::kUrlBadHost,
            "url host " + quoted(authority) + " has characters after ']' that are not a ':port'");
        host_parsed = false;
      }
    }
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port = authority.substr(colon + 1);
    }
  }

  if (host_parsed) {
    if (host.empty()) {
      add(out, kFieldUrl, Rule::kUrlNoHost, "url has no host; give one after \"://\"");
    } else if (bracketed) {
      check_ipv6_host(host, out);
    } else if (const std::string problem = host_problem(host); !problem.empty()) {
      add(out, kFieldUrl, Rule::kUrlBadHost,
          "url host " + quoted(host) + " is not a valid host name, IPv4 address or bracketed " +
              "IPv6 address: it " + problem);
    }
  }

  parts.port = parts.scheme == Scheme::kHttps ? kHttpsPort : kHttpPort;
  if (has_port) check_port(port, out, parts.port);

  parts.host.resize(host.size());
  std::transform(host.begin(), host.end(), parts.host.begin(), to_lower);
  if (path_and_query.empty() || path_and_query.front() == '?') {
    parts.target = "/";
    parts.target += path_and_query;
  } else {
    parts.target = path_and_query;
  }
}

// ---------------------------------------------------------------------------------------------
// Custom headers
// ---------------------------------------------------------------------------------------------

// For each header, the index of the first earlier header with the same key ignoring case, or
// npos. Sorting keeps this O(n log n) however many headers arrive.
std::vector<std::size_t> earlier_duplicates(std::span<const Header> headers) {
  std::vector<std::size_t> order(headers.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (iless(headers[a].name, headers[b].name)) return true;
    if (iless(headers[b].name, headers[a].name)) return false;
    return a < b;
  });
  std::vector<std::size_t> first(headers.size(), std::string_view::npos);
  for (std::size_t i = 1; i < order.size(); ++i) {
    const std::size_t prev = order[i - 1];
    if (iequals(headers[prev].name, headers[order[i]].name)) {
      first[order[i]] = first[prev] == std::string_view::npos ? prev : first[prev];
    }
  }
  return first;
}

std::size_t earlier_duplicate_pairwise(std::span<const Header> headers, std::size_t i) noexcept {
  for (std::size_t j = 0; j < i; ++j) {
    if (iequals(headers[j].name, headers[i].name)) return j;
  }
  return std::string_view::npos;
}

// How a message names the header: by its key, or by position when the key is empty.
std::string header_label(std::string_view key, std::size_t index) {
  if (key.empty()) return "custom header #" + std::to_string(index + 1) + " (empty key)";
  return "custom header " + quoted(key);
}

void check_key(std::string_view key, std::size_t index, std::vector<Violation>& out) {
  if (key.empty()) {
    add(out, kFieldHeaders, Rule::kHeaderKeyEmpty,
        "custom header #" + std::to_string(index + 1) + " has an empty key");
    return;
  }
  const std::string k = quoted(key);
  if (!istarts_with(key, "x-")) {
    add(out, kFieldHeaders, Rule::kHeaderKeyNoXPrefix,
        "custom header key " + k + " does not start with \"X-\"");
  } else if (istarts_with(key, "x-partoo")) {
    add(out, kFieldHeaders, Rule::kHeaderKeyReservedPrefix,
        "custom header key " + k +
            " starts with the reserved prefix \"X-Partoo\", which only fanout may send");
  }
  if (key.size() > kMaxHeaderKeyLength) {
    add(out, kFieldHeaders, Rule::kHeaderKeyTooLong,
        "custom header key " + k + " is " + std::to_string(key.size()) +
            " characters long; at most 128 are allowed");
  }

  // Every distinct forbidden character is named, in order of first appearance.
  std::string forbidden;
  std::size_t forbidden_count = 0;
  std::size_t control_at = std::string_view::npos;
  std::size_t non_ascii_at = std::string_view::npos;
  std::array<bool, 128> seen{};
  for (std::size_t i = 0; i < key.size(); ++i) {
    const unsigned char b = byte_of(key[i]);
    if (b >= 0x80) {
      if (non_ascii_at == std::string_view::npos) non_ascii_at = i;
    } else if (is_control(b)) {
      if (control_at == std::string_view::npos) control_at = i;
    } else if (kForbiddenKeyChars.find(key[i]) != std::string_view::npos && !seen[b]) {
      seen[b] = true;
      if (forbidden_count++ > 0) forbidden += ", ";
      forbidden += shown_byte(b);
    }
  }
  if (forbidden_count > 0) {
    add(out, kFieldHeaders, Rule::kHeaderKeyForbiddenChar,
        "custom header key " + k + " contains the forbidden character" +
            (forbidden_count > 1 ? "s " : " ") + forbidden);
  }
  if (control_at != std::string_view::npos) {
    add(out, kFieldHeaders, Rule::kHeaderKeyControlChar,
        "custom header key " + k + " contains the control character " +
            shown_byte(byte_of(key[control_at])) + " at byte offset " + std::to_string(control_at));
  }
  if (non_ascii_at != std::string_view::npos) {
    add(out, kFieldHeaders, Rule::kHeaderKeyNonAscii,
        "custom header key " + k + " contains the non-ASCII byte " +
            shown_byte(byte_of(key[non_ascii_at])) + " at byte offset " +
            std::to_string(non_ascii_at) + "; keys are ASCII only");
  }
}

// Length of the valid UTF-8 sequence that starts at s[i], a byte >= 0x80, or 0 when there is
// none. The second-byte ranges refuse overlongs, surrogates and code points past U+10FFFF.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const unsigned char b0 = byte_of(s[i]);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  const unsigned char b1 = byte_of(s[i + 1]);
  if (b1 < lo || b1 > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    const unsigned char b = byte_of(s[i + k]);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return len;
}

// Values may carry secrets (tokens, API keys), so messages name the key and offsets, never the
// value itself.
void check_value(const Header& header, std::size_t index, std::vector<Violation>& out) {
  const std::string_view value = header.value;
  std::size_t chars = 0;
  std::size_t control_at = std::string_view::npos;
  std::size_t bad_utf8_at = std::string_view::npos;
  for (std::size_t i = 0; i < value.size();) {
    ++chars;
    const unsigned char b = byte_of(value[i]);
    if (b < 0x80) {
      if (is_control(b) && control_at == std::string_view::npos) control_at = i;
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence_length(value, i);
    if (len == 0) {
      // A stray byte counts as one character, so the length check still means something.
      if (bad_utf8_at == std::string_view::npos) bad_utf8_at = i;
      ++i;
    } else {
      i += len;
    }
  }

  if (chars > kMaxHeaderValueLength) {
    add(out, kFieldHeaders, Rule::kHeaderValueTooLong,
        header_label(header.name, index) + " has a value of " + std::to_string(chars) +
            " characters; at most 512 are allowed");
  }
  if (control_at != std::string_view::npos) {
    add(out, kFieldHeaders, Rule::kHeaderValueControlChar,
        header_label(header.name, index) + " has a value containing the control character " +
            shown_byte(byte_of(value[control_at])) + " at byte offset " +
            std::to_string(control_at) + "; tabs, line breaks and other control characters " +
            "are not allowed");
  }
  if (bad_utf8_at != std::string_view::npos) {
    add(out, kFieldHeaders, Rule::kHeaderValueBadUtf8,
        header_label(header.name, index) + " has a value that is not valid UTF-8 (byte " +
            shown_byte(byte_of(value[bad_utf8_at])) + " at byte offset " +
            std::to_string(bad_utf8_at) + ")");
  }
  const bool leading = !value.empty() && value.front() == ' ';
  const bool trailing = !value.empty() && value.back() == ' ';
  if (leading || trailing) {
    add(out, kFieldHeaders, Rule::kHeaderValueEdgeSpace,
        header_label(header.name, index) + " has a value that " +
            (leading && trailing ? "starts and ends"
             : leading           ? "starts"
                                 : "ends") +
            " with a space, which HTTP would strip");
  }
}

void check_headers(std::span<const Header> headers, std::vector<Violation>& out) {
  if (headers.size() > kMaxCustomHeaders) {
    add(out, kFieldHeaders, Rule::kHeadersTooMany,
        "custom_headers has " + std::to_string(headers.size()) + " headers; at most 5 are allowed");
  }
  std::vector<std::size_t> duplicates;
  const bool pairwise = headers.size() <= kPairwiseDuplicateLimit;
  if (!pairwise) duplicates = earlier_duplicates(headers);

  for (std::size_t i = 0; i < headers.size(); ++i) {
    const Header& header = headers[i];
    check_key(header.name, i, out);
    if (!header.name.empty()) {
      const std::size_t first = pairwise ? earlier_duplicate_pairwise(headers, i) : duplicates[i];
      if (first != std::string_view::npos) {
        add(out, kFieldHeaders, Rule::kHeaderKeyDuplicate,
            "custom header key " + quoted(header.name) + " repeats the key " +
                quoted(headers[first].name) + " (keys are compared ignoring case)");
      }
    }
    check_value(header, i, out);
  }
}

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
    add(violations, kFieldOrgId, Rule::kOrgIdNotPositive,
        "org_id must be a positive integer; got " + std::to_string(spec.org_id));
  }
  const std::optional<EventTypeId> event_type = catalogue.find(spec.event_type);
  if (!event_type) check_event_type(spec.event_type, catalogue, violations);
  UrlParts parts;
  check_url(spec.url, options, parts, violations);
  check_headers(spec.custom_headers, violations);
  if (!violations.empty()) return tl::unexpected(std::move(violations));

  Subscription sub;
  sub.org_id = spec.org_id;
  sub.event_type = *event_type;
  sub.url = spec.url;
  sub.parts = std::move(parts);
  sub.custom_headers = spec.custom_headers;
  return sub;
}

tl::expected<UrlParts, std::vector<Violation>> validate_url(std::string_view url,
                                                            const ValidationOptions& options) {
  std::vector<Violation> violations;
  UrlParts parts;
  check_url(url, options, parts, violations);
  if (!violations.empty()) return tl::unexpected(std::move(violations));
  return parts;
}

std::vector<Violation> validate_custom_headers(std::span<const Header> headers) {
  std::vector<Violation> violations;
  check_headers(headers, violations);
  return violations;
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
