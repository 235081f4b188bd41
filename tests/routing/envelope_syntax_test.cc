// The envelope parser against malformed JSON: truncations, syntax errors, bad escapes, control
// characters and UTF-8, nesting depth, and a differential check against the reference validator
// (envelope_support.h) on mutated realistic events.
#include "routing/envelope.h"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>

#include "tests/routing/envelope_support.h"

namespace fanout::routing {
namespace {

using namespace std::string_literals;

// ---------------------------------------------------------------------------------------------
// Malformed JSON.
// ---------------------------------------------------------------------------------------------

TEST_F(EnvelopeParserTest, RefusesEveryTruncatedPrefix) {
  for (const Sample& s : kSamples) {
    const std::string json = event_json(s);
    for (std::size_t n = 0; n < json.size(); ++n) {
      // An exactly sized heap copy, so a read past the prefix is an ASan error.
      const std::vector<char> prefix(json.begin(), json.begin() + static_cast<std::ptrdiff_t>(n));
      const auto result = parser_.parse(std::string_view(prefix.data(), prefix.size()));
      ASSERT_FALSE(result.has_value()) << s.type << " accepted prefix of " << n << " bytes";
      EXPECT_EQ(result.error(), EnvelopeError::kInvalidJson) << s.type << " prefix " << n;
    }
    EXPECT_TRUE(parser_.parse(json).has_value());
  }
}

TEST_F(EnvelopeParserTest, RefusesEmptyAndBlankInput) {
  EXPECT_EQ(error_of(""), EnvelopeError::kInvalidJson);
  EXPECT_EQ(error_of(std::string_view()), EnvelopeError::kInvalidJson);
  EXPECT_EQ(error_of(" \n\t\r "), EnvelopeError::kInvalidJson);
}

TEST_F(EnvelopeParserTest, RefusesValidJsonThatIsNotAnObject) {
  for (std::string_view json :
       {"null", "true", "false", "0", "-1.5e3", "42", "123456789012345678901234567890",
        "\"business_created\"", "\"a\\u00e9\"", "[]", "[{\"org_id\":1}]", " [ 1 , [ ] ] ",
        "\n null \n"}) {
    EXPECT_EQ(error_of(json), EnvelopeError::kNotObject) << json;
  }
}

TEST_F(EnvelopeParserTest, RefusesInvalidJsonThatIsNotAnObject) {
  for (std::string_view json :
       {"nul", "nulll", "True", "tru e", "01", "-", "1.", "\"abc", "\"abc\" x", "\"a\\x\"", "[1,",
        "[1,]", "[1 2]", "]", "}", "[tru]", "1 2", "null,", "[] []"}) {
    EXPECT_EQ(error_of(json), EnvelopeError::kInvalidJson) << json;
  }
}

TEST_F(EnvelopeParserTest, RefusesTrailingBytesAfterTheObject) {
  const std::string event = with_payload(R"({"a":1})");
  for (const std::string& tail :
       {" x"s, "}"s, "]"s, ","s, " {}"s, "{}"s, " null"s, "1"s, "\"\""s, ":"s, "\0"s, " \x01"s}) {
    EXPECT_EQ(error_of(event + tail), EnvelopeError::kInvalidJson) << testing::PrintToString(tail);
  }
  EXPECT_TRUE(parse(event + " \n\t\r").has_value());
  EXPECT_TRUE(parse(" \n\t\r" + event).has_value());
}

TEST_F(EnvelopeParserTest, RefusesByteOrderMark) {
  // RFC 8259 forbids sending one; accepting it would make the body depend on the sender.
  EXPECT_EQ(error_of("\xEF\xBB\xBF" + with_payload("{}")), EnvelopeError::kInvalidJson);
}

TEST_F(EnvelopeParserTest, RefusesSyntaxErrorsInTheEnvelope) {
  for (std::string_view json : {
           R"({"org_id":1,"type":"business_created","payload":{},})",
           R"({"org_id":1 "type":"business_created","payload":{}})",
           R"({"org_id":1,"type":"business_created","payload":{}}})",
           R"({"org_id":1,"type":"business_created","payload":{})",
           R"({"org_id"1,"type":"business_created","payload":{}})",
           R"({org_id:1,"type":"business_created","payload":{}})",
           R"({'org_id':1,"type":"business_created","payload":{}})",
           R"({"org_id":01,"type":"business_created","payload":{}})",
           R"({"org_id":+1,"type":"business_created","payload":{}})",
           R"({"org_id":1,,"type":"business_created","payload":{}})",
           R"({,"org_id":1,"type":"business_created","payload":{}})",
           R"({"org_id":1,"type":"business_created","payload":})",
           R"({"org_id":1,"type":"business_created","payload"})",
           R"({"org_id":1,"type":"business_created","payload":{]})",
           R"({"org_id":1,"type":"business_created","payload":[}})",
           R"({"org_id":1,"type":"business_\x","payload":{}})",
           R"({"org_id":1,"type":"business_created","id":"a\q","payload":{}})",
           "{\"org_id\":1,\"type\":\"business_created\",\"payload\":{}\f}",
       }) {
    EXPECT_EQ(error_of(json), EnvelopeError::kInvalidJson) << json;
  }
}

TEST_F(EnvelopeParserTest, RefusesInvalidScalarInsideIgnoredField) {
  for (std::string_view field :
       {R"("extra":tru)", R"("extra":nul)", R"("extra":fals)", R"("extra":truex)", R"("extra":01)",
        R"("extra":1.)", R"("extra":.5)", R"("extra":-)", R"("extra":1e)", R"("extra":0x10)",
        R"("extra":NaN)", R"("extra":Infinity)", R"("extra":"\x")", R"("extra":[1,2,}])",
        R"("extra":{"a" 1})", R"("extra":{1:2})", R"("\x":1)"}) {
    EXPECT_EQ(error_of(with_fields(field)), EnvelopeError::kInvalidJson) << field;
  }
}

TEST_F(EnvelopeParserTest, RefusesInvalidScalarDeepInsidePayload) {
  for (std::string_view payload :
       {R"({"a":[1,2,{"b":nul}]})", R"({"a":[1,2,{"b":[true,fals]}]})", R"({"a":[1,2,{"b":-01}]})",
        R"({"a":[1,2,{"b":1.5e+}]})", R"({"a":[1,2,{"b":"\u12G4"}]})", R"({"a":[1,2,{"b":--1}]})",
        R"({"a":[1,2,{"b":"ok","c":undefined}]})", R"({"a":[1,2,{"\q":1}]})",
        R"({"a":[1,2,{"b":1}},3]})", R"({"a":[1,2,{"b":1]]})", R"({"a":[1,2,{"b":1,}]})",
        R"({"a":[1,2,{"b" "c"}]})", R"({"a":[1 2]})", R"({"a":[,1]})", R"({"a":[1,,2]})",
        R"({"a":[1,2,]})", R"({"a":{"b":1}"c":2})", R"({"a":'x'})", R"({"a":1/2})"}) {
    EXPECT_EQ(error_of(with_payload(payload)), EnvelopeError::kInvalidJson) << payload;
  }
}

TEST_F(EnvelopeParserTest, RefusesInvalidStringEscapes) {
  for (std::string_view s : {R"("\x")", R"("\u")", R"("\u12")", R"("\u12G4")", R"("\U0041")",
                             R"("\ud800")", R"("\udc00")", R"("\ud800\u0041")", R"("\ud800x")",
                             R"("\uDFFF\uD800")", R"("\')", R"("\a")", R"("\0")"}) {
    EXPECT_EQ(error_of(with_payload(R"({"s":)" + std::string(s) + "}")),
              EnvelopeError::kInvalidJson)
        << s;
    EXPECT_EQ(error_of(with_payload("{" + std::string(s) + ":1}")), EnvelopeError::kInvalidJson)
        << s;
  }
}

TEST_F(EnvelopeParserTest, RefusesRawControlCharactersInStrings) {
  for (char c : {'\0', '\x01', '\t', '\n', '\r', '\x1f'}) {
    std::string payload = R"({"s":"a?b"})";
    payload[7] = c;
    EXPECT_EQ(error_of(with_payload(payload)), EnvelopeError::kInvalidJson) << int{c};
  }
}

TEST_F(EnvelopeParserTest, RefusesInvalidUtf8Anywhere) {
  const std::vector<std::string> bad = {
      "\x80",              // lone continuation byte
      "\xBF",              // lone continuation byte
      "\xC3",              // truncated two-byte sequence
      "\xE2\x82",          // truncated three-byte sequence
      "\xF0\x9F\x98",      // truncated four-byte sequence
      "\xC0\x80",          // overlong NUL
      "\xC1\xBF",          // overlong two-byte
      "\xE0\x80\x80",      // overlong three-byte
      "\xF0\x80\x80\x80",  // overlong four-byte
      "\xED\xA0\x80",      // UTF-16 high surrogate encoded in UTF-8
      "\xED\xBF\xBF",      // UTF-16 low surrogate encoded in UTF-8
      "\xF4\x90\x80\x80",  // above U+10FFFF
      "\xF5\x80\x80\x80",  // invalid lead byte
      "\xFE",              // invalid byte
      "\xFF",              // invalid byte
  };
  for (const std::string& b : bad) {
    const std::string hex = testing::PrintToString(b);
    EXPECT_EQ(error_of(with_payload(R"({"s":"a)" + b + "\"}")), EnvelopeError::kInvalidJson)
        << "payload string " << hex;
    EXPECT_EQ(error_of(with_payload(R"({"k)" + b + "\":1}")), EnvelopeError::kInvalidJson)
        << "payload key " << hex;
    EXPECT_EQ(error_of(with_fields(R"("extra":")" + b + "\"")), EnvelopeError::kInvalidJson)
        << "ignored field " << hex;
    EXPECT_EQ(error_of(with_fields(R"("id":")" + b + "\"")), EnvelopeError::kInvalidJson)
        << "id " << hex;
    EXPECT_EQ(error_of(with_payload("{}") + " " + b), EnvelopeError::kInvalidJson)
        << "after the object " << hex;
  }
}

// ---------------------------------------------------------------------------------------------
// Depth.
// ---------------------------------------------------------------------------------------------

// An event whose deepest container sits at `depth`, the top-level object counting 1.
std::string nested_event(std::size_t depth) {
  const std::size_t arrays = depth - 2;  // the top-level object and the payload object
  return with_payload(R"({"a":)" + std::string(arrays, '[') + std::string(arrays, ']') + "}");
}

TEST_F(EnvelopeParserTest, AcceptsNestingExactlyAtMaxDepth) {
  const std::string json = nested_event(kDefaultMaxDepth);
  ASSERT_EQ(ReferenceJson::depth(json), kDefaultMaxDepth);
  EXPECT_TRUE(parse(json).has_value());
}

TEST_F(EnvelopeParserTest, RefusesNestingOneBeyondMaxDepth) {
  const std::string json = nested_event(kDefaultMaxDepth + 1);
  ASSERT_EQ(ReferenceJson::depth(json), kDefaultMaxDepth + 1);
  EXPECT_EQ(error_of(json), EnvelopeError::kTooDeep);
}

TEST_F(EnvelopeParserTest, AppliesConfiguredMaxDepthEverywhere) {
  EnvelopeParser parser(catalogue_, {.max_depth = 4});
  EXPECT_TRUE(parser.parse(with_payload(R"({"a":[{"b":1}]})")).has_value());
  EXPECT_EQ(parser.parse(with_payload(R"({"a":[{"b":[]}]})")).error(), EnvelopeError::kTooDeep);
  EXPECT_EQ(parser.parse(with_fields(R"("x":[[[[]]]])")).error(), EnvelopeError::kTooDeep);
  EXPECT_TRUE(parser.parse(with_fields(R"("x":[[[]]])")).has_value());
  EXPECT_EQ(parser.parse("[[[[[]]]]]").error(), EnvelopeError::kTooDeep);
  EXPECT_EQ(parser.parse("[[[[]]]]").error(), EnvelopeError::kNotObject);

  EnvelopeParser flat(catalogue_, {.max_depth = 1});
  EXPECT_EQ(flat.parse(with_payload("{}")).error(), EnvelopeError::kTooDeep);
  EXPECT_EQ(flat.parse(R"({"org_id":1,"type":"business_created"})").error(),
            EnvelopeError::kMissingPayload);
}

TEST_F(EnvelopeParserTest, RefusesTenThousandOpenBracketsWithoutCrashing) {
  const std::string open(10000, '[');
  for (const std::string& json :
       {with_payload(R"({"a":)" + open), with_payload(R"({"a":)" + open + "}"),
        with_payload(R"({"a":)" + open + std::string(10000, ']') + "}"), open,
        open + std::string(10000, ']'), std::string(10000, '{')}) {
    const EnvelopeError e = error_of(json);
    EXPECT_TRUE(e == EnvelopeError::kTooDeep || e == EnvelopeError::kInvalidJson) << reason_code(e);
  }
  EXPECT_EQ(error_of(with_payload(R"({"a":)" + open + std::string(10000, ']') + "}")),
            EnvelopeError::kTooDeep);
}

TEST_F(EnvelopeParserTest, BoundsRecursionEvenWithHugeConfiguredDepth) {
  EnvelopeParser parser(catalogue_,
                        {.max_event_bytes = 1 << 20, .max_depth = std::size_t{1} << 40});
  const std::size_t n = 200000;
  const std::string json =
      with_payload(R"({"a":)" + std::string(n, '[') + std::string(n, ']') + "}");
  EXPECT_EQ(parser.parse(json).error(), EnvelopeError::kTooDeep);
}

// ---------------------------------------------------------------------------------------------
// Differential check against the reference validator on mutated realistic events.
// ---------------------------------------------------------------------------------------------

bool refused_as_json(const tl::expected<Envelope, EnvelopeError>& r) {
  return !r && (r.error() == EnvelopeError::kInvalidJson || r.error() == EnvelopeError::kTooDeep);
}

TEST_F(EnvelopeParserTest, AgreesWithReferenceValidatorOnMutatedEvents) {
  constexpr std::string_view kAlphabet =
      "{}[]:,\"\\ \t\n0123456789-+.eEtrufalsnu/\x01\x7F\xC3\xA9\xED\xA0\x80\xFF";
  // Whole tokens too, since structural confusions (a string taken for a key) need them.
  const std::array<std::string, 16> kFragments = {
      R"("k":)",        ":",     ",",    R"("x")", "{}",    "[]",
      R"({"a":)",       "]",     "}",    R"(\u)",  R"(\")", R"(,"payload":{})",
      R"("org_id":1,)", "1e999", "null", " \t\n"};
  std::mt19937 rng(20241127);
  int agreed_valid = 0;
  for (const Sample& s : kSamples) {
    const std::string original = event_json(s);
    for (int i = 0; i < 4000; ++i) {
      std::string json = original;
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits && !json.empty(); ++e) {
        const std::size_t pos = rng() % json.size();
        const char c = kAlphabet[rng() % kAlphabet.size()];
        switch (rng() % 5) {
          case 0:
            json[pos] = c;
            break;
          case 1:
            json.erase(pos, 1);
            break;
          case 2:
            json.insert(pos, 1, c);
            break;
          case 3:
            json.insert(pos, kFragments[rng() % kFragments.size()]);
            break;
          default:
            json.insert(pos, json.substr(rng() % json.size(), 1 + rng() % 8));
            break;
        }
      }
      const bool valid =
          ReferenceJson::valid(json) && ReferenceJson::depth(json) <= kDefaultMaxDepth;
      const auto result = parse(json);
      ASSERT_EQ(!refused_as_json(result), valid)
          << testing::PrintToString(json) << " -> "
          << (result ? "accepted" : reason_code(result.error()));
      if (valid) ++agreed_valid;
      if (result) {
        EXPECT_TRUE(ReferenceJson::valid(result->payload));
      }
    }
  }
  // The mutations must exercise both sides, not only produce garbage.
  EXPECT_GT(agreed_valid, 500);
}

}  // namespace
}  // namespace fanout::routing
