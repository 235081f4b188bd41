// Subscription validation, the custom-header rules (docs/webhook-contract.md §1; routing/README.md,
// "Subscription validation"): validate_custom_headers() and the check validate() runs on the
// custom_headers field.
#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "routing/subscription.h"
#include "routing/subscription_checks.h"

namespace fanout::routing {

namespace detail {

namespace {

// Up to this many headers, duplicates are found pairwise without allocating; beyond it (already
// an error) by sorting, so a request with thousands of headers cannot cost quadratic time.
constexpr std::size_t kPairwiseDuplicateLimit = 8;

constexpr std::string_view kForbiddenKeyChars = " ()<>@,;:\\\"/[]?={}";

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

}  // namespace

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

}  // namespace detail

std::vector<Violation> validate_custom_headers(std::span<const Header> headers) {
  std::vector<Violation> violations;
  detail::check_headers(headers, violations);
  return violations;
}

}  // namespace fanout::routing
