// JSON writing (json_out.h).
#include "tools/common/json_out.h"

#include <simdjson.h>

namespace fanout::json {

void append_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = simdjson::validate_utf8(s.data(), s.size());
  // What goes as it is: printable ASCII but the quote and the backslash, and valid UTF-8's bytes.
  const auto plain = [utf8](unsigned char c) {
    return c >= 0x20 && c != '"' && c != '\\' && c != 0x7F && (c < 0x80 || utf8);
  };
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    // The run of plain bytes in one append (an id, a name: the whole string).
    std::size_t j = i;
    while (j < s.size() && plain(static_cast<unsigned char>(s[j]))) ++j;
    out.append(s.data() + i, j - i);
    if (j == s.size()) break;
    const char ch = s[j];
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c < 0x20 || c == 0x7F) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.append("\\ufffd");  // a byte of invalid UTF-8
    }
    i = j + 1;
  }
  out.push_back('"');
}

std::vector<std::pair<std::size_t, std::string_view>> ndjson_lines(std::string_view text) {
  std::vector<std::pair<std::size_t, std::string_view>> lines;
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) lines.emplace_back(number, line);
  }
  return lines;
}

}  // namespace fanout::json
