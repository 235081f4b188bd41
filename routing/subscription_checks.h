// What the three parts of subscription validation share (internal to fanout_routing):
// routing/subscription.cc (validate(), the rule names, the messages' quoting), subscription_url.cc
// (the URL rules, validate_url()) and subscription_headers.cc (the custom-header rules,
// validate_custom_headers()).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routing/subscription.h"

namespace fanout::routing::detail {

inline constexpr std::string_view kFieldOrgId = "org_id";
inline constexpr std::string_view kFieldEventType = "event_type";
inline constexpr std::string_view kFieldUrl = "url";
inline constexpr std::string_view kFieldHeaders = "custom_headers";

inline unsigned char byte_of(char c) noexcept {
  return static_cast<unsigned char>(c);
}

inline bool is_control(unsigned char b) noexcept {
  return b < 0x20 || b == 0x7F;
}

inline bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

inline bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

inline bool is_hex_digit(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

inline char to_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return to_lower(x) == to_lower(y);
         });
}

inline bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

inline bool iless(std::string_view a, std::string_view b) noexcept {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return byte_of(to_lower(x)) < byte_of(to_lower(y));
  });
}

// `s` in double quotes, with unprintable bytes as \xNN so a message never carries raw control or
// non-UTF-8 bytes into logs or JSON; cut (with "...") past 64 bytes, so a 2 KiB URL or key does
// not turn one violation into a wall of text.
[[nodiscard]] std::string quoted(std::string_view s);

// One byte as a reader should see it: 'c' when printable, \xNN otherwise.
[[nodiscard]] std::string shown_byte(unsigned char b);

inline void add(std::vector<Violation>& out, std::string_view field, Rule rule,
                std::string message) {
  out.push_back(Violation{std::string(field), rule, std::move(message)});
}

// Appends the violations of `url` to `out`; `parts` is meaningful only when none were added
// (subscription_url.cc).
void check_url(std::string_view url, const ValidationOptions& options, UrlParts& parts,
               std::vector<Violation>& out);

// Appends the violations of `headers` to `out` (subscription_headers.cc).
void check_headers(std::span<const Header> headers, std::vector<Violation>& out);

}  // namespace fanout::routing::detail
