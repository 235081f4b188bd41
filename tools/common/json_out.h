// Writing JSON for fanout's programs (fanoutd's answers, fanout-sink's record, fanout-load's
// summary, fanout-demo's errors). Parsing is simdjson's; writing is string appends.
//
// append_string() quotes and escapes: '"', '\\' and control bytes (< 0x20, 0x7F) are escaped;
// valid UTF-8 passes through; when the text is not valid UTF-8 (an error message quoting a
// client's bytes), every byte >= 0x80 becomes U+FFFD, so the answer is always valid JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout::json {

void append_string(std::string& out, std::string_view s);

inline void append_int(std::string& out, std::int64_t v) {
  out += std::to_string(v);
}

// `"key":` with the key escaped.
inline void append_key(std::string& out, std::string_view key) {
  append_string(out, key);
  out.push_back(':');
}

// The non-blank lines of an NDJSON text with their 1-based line numbers (blank lines count;
// a trailing '\r' is dropped). Used by ingest and by `fanoutd publish`.
[[nodiscard]] std::vector<std::pair<std::size_t, std::string_view>> ndjson_lines(
    std::string_view text);

}  // namespace fanout::json
