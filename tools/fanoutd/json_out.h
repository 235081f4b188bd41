// Writing JSON for fanoutd's answers. Parsing is simdjson's; writing is string appends.
//
// append_string() quotes and escapes: '"', '\\' and control bytes (< 0x20, 0x7F) are escaped;
// valid UTF-8 passes through; when the text is not valid UTF-8 (an error message quoting a
// client's bytes), every byte >= 0x80 becomes U+FFFD, so the answer is always valid JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fanout::daemon::json {

void append_string(std::string& out, std::string_view s);

inline void append_int(std::string& out, std::int64_t v) {
  out += std::to_string(v);
}

// `"key":` with the key escaped.
inline void append_key(std::string& out, std::string_view key) {
  append_string(out, key);
  out.push_back(':');
}

}  // namespace fanout::daemon::json
