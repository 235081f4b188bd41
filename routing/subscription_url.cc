// Subscription validation, the URL rules (docs/webhook-contract.md §1; routing/README.md,
// "Subscription validation"): validate_url() and the check validate() runs on the url field.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routing/subscription.h"
#include "routing/subscription_checks.h"

namespace fanout::routing {

namespace detail {

namespace {

constexpr std::size_t kMaxDnsNameLength = 253;
constexpr std::size_t kMaxDnsLabelLength = 63;
constexpr std::uint32_t kMaxPort = 65535;
constexpr std::uint16_t kHttpsPort = 443;
constexpr std::uint16_t kHttpPort = 80;

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

}  // namespace

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

}  // namespace detail

tl::expected<UrlParts, std::vector<Violation>> validate_url(std::string_view url,
                                                            const ValidationOptions& options) {
  std::vector<Violation> violations;
  UrlParts parts;
  detail::check_url(url, options, parts, violations);
  if (!violations.empty()) return tl::unexpected(std::move(violations));
  return parts;
}

}  // namespace fanout::routing
