// tools/common/json_out.h: append_string's escapes, byte for byte, and that what it writes
// parses back (simdjson) to the text given, wherever the escapes fall in the string.
#include "tools/common/json_out.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>
#include <string_view>

namespace fanout::json {
namespace {

std::string escaped(std::string_view s) {
  std::string out = "x";  // appended to, never replaced
  append_string(out, s);
  return out.substr(1);
}

std::string parsed(const std::string& json) {
  simdjson::dom::parser parser;
  std::string_view v;
  EXPECT_EQ(parser.parse(json).get(v), simdjson::SUCCESS) << json;
  return std::string(v);
}

TEST(AppendString, PlainTextGoesAsItIs) {
  EXPECT_EQ(escaped(""), R"("")");
  EXPECT_EQ(escaped("0123456789abcdef0123456789abcdef"), R"("0123456789abcdef0123456789abcdef")");
  EXPECT_EQ(escaped("caf\xC3\xA9 \xE2\x82\xAC"), "\"caf\xC3\xA9 \xE2\x82\xAC\"");
}

TEST(AppendString, EscapesQuotesBackslashesAndControlBytes) {
  EXPECT_EQ(escaped("a\"b"), R"("a\"b")");
  EXPECT_EQ(escaped("\\"), R"("\\")");
  EXPECT_EQ(escaped("line\nnext\tcol"), R"("line\nnext\tcol")");
  EXPECT_EQ(escaped(std::string_view("\x00\x01\x1F\x7F", 4)), R"("\u0000\u0001\u001f\u007f")");
  EXPECT_EQ(escaped("\"\"\\\\"), R"("\"\"\\\\")");
}

TEST(AppendString, InvalidUtf8BecomesReplacementCharacters) {
  // Every byte >= 0x80 of a text that is not valid UTF-8, valid sequences included.
  EXPECT_EQ(escaped("ok\xFF\xC3\xA9!"), R"("ok\ufffd\ufffd\ufffd!")");
}

TEST(AppendString, ParsesBackToTheTextWhereverTheEscapesFall) {
  const std::string_view specials[] = {"\"", "\\", "\n", "\t", "\x01", "\x7F", "\xC3\xA9"};
  for (const std::string_view special : specials) {
    for (std::size_t before = 0; before < 4; ++before) {
      for (std::size_t after = 0; after < 4; ++after) {
        const std::string text =
            std::string(before, 'a') + std::string(special) + std::string(after, 'z');
        EXPECT_EQ(parsed(escaped(text)), text) << escaped(text);
        const std::string twice = text + text;
        EXPECT_EQ(parsed(escaped(twice)), twice) << escaped(twice);
      }
    }
  }
}

}  // namespace
}  // namespace fanout::json
