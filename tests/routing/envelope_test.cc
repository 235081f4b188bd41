#include "routing/envelope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fanout::routing {
namespace {

using namespace std::string_literals;

// ---------------------------------------------------------------------------------------------
// A strict, deliberately simple reference validator (RFC 8259, UTF-8 checked, unpaired surrogate
// escapes refused as I-JSON does), written independently of simdjson so the two can be compared.
// ---------------------------------------------------------------------------------------------
class ReferenceJson {
 public:
  // True when `s` is one valid JSON value, optionally surrounded by whitespace.
  static bool valid(std::string_view s) {
    ReferenceJson r(s);
    r.skip_space();
    if (!r.value(0)) return false;
    r.skip_space();
    return r.pos_ == s.size();
  }

  // Nesting depth of the deepest container of a valid document (0 for a scalar).
  static std::size_t depth(std::string_view s) {
    std::size_t depth = 0, deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (in_string) {
        if (c == '\\') ++i;
        if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        deepest = std::max(deepest, ++depth);
      } else if (c == '}' || c == ']') {
        --depth;
      }
    }
    return deepest;
  }

 private:
  explicit ReferenceJson(std::string_view s) : s_(s) {}

  [[nodiscard]] bool at_end() const { return pos_ >= s_.size(); }
  [[nodiscard]] unsigned char peek() const {
    return at_end() ? 0 : static_cast<unsigned char>(s_[pos_]);
  }
  bool eat(char c) {
    if (at_end() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) {
      ++pos_;
    }
  }

  bool value(int depth) {
    if (depth > 512) return false;  // deeper than any test input; keeps the stack small
    switch (peek()) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  bool object(int depth) {
    ++pos_;
    skip_space();
    if (eat('}')) return true;
    for (;;) {
      skip_space();
      if (peek() != '"' || !string()) return false;
      skip_space();
      if (!eat(':')) return false;
      skip_space();
      if (!value(depth)) return false;
      skip_space();
      if (eat('}')) return true;
      if (!eat(',')) return false;
    }
  }

  bool array(int depth) {
    ++pos_;
    skip_space();
    if (eat(']')) return true;
    for (;;) {
      skip_space();
      if (!value(depth)) return false;
      skip_space();
      if (eat(']')) return true;
      if (!eat(',')) return false;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool digits() {
    const std::size_t start = pos_;
    while (peek() >= '0' && peek() <= '9') ++pos_;
    return pos_ > start;
  }

  bool number() {
    eat('-');
    if (eat('0')) {
    } else if (peek() >= '1' && peek() <= '9') {
      digits();
    } else {
      return false;
    }
    if (eat('.') && !digits()) return false;
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }

  int hex4() {
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      const unsigned char c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) return -1;
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  bool string() {
    ++pos_;
    for (;;) {
      if (at_end()) return false;
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        ++pos_;
        const unsigned char e = peek();
        ++pos_;
        if (e == 'u') {
          const int cp = hex4();
          if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!eat('\\') || !eat('u')) return false;
            const int low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) return false;
          }
        } else if (std::string_view("\"\\/bfnrt").find(static_cast<char>(e)) ==
                       std::string_view::npos ||
                   e == 0) {
          return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++pos_;
        continue;
      }
      if (!utf8_sequence()) return false;
    }
  }

  // One multi-byte UTF-8 sequence: no overlong forms, no surrogates, nothing above U+10FFFF.
  bool utf8_sequence() {
    const unsigned char c = peek();
    int length = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    ++pos_;
    for (int i = 1; i < length; ++i) {
      const unsigned char k = peek();
      if ((k & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (k & 0x3Fu);
      ++pos_;
    }
    if (length == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
    if (length == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
    return true;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Realistic Partoo events, one per catalogue type.
// ---------------------------------------------------------------------------------------------
struct Sample {
  std::string_view type;
  std::int64_t org_id;
  std::string_view id;
  std::string_view payload;
};

constexpr std::string_view kBusinessPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5","org_id":1042,"name":"Boulangerie Lef\u00e8vre","code":"BL-PARIS-11","status":"open",)"
    R"("address_full":"12 Rue Oberkampf","address2":"B\u00e2timent B","city":"Paris","zipcode":"75011","region":"\u00cele-de-France","country":"FR",)"
    R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
    R"("contacts":[{"name":"","email":"contact@boulangerie-lefevre.fr","phone_numbers":["+33143570000"],"fax":""}],)"
    R"("open_hours":{"monday":[],"tuesday":["07:00-13:30","15:30-20:00"],"wednesday":["07:00-13:30","15:30-20:00"],)"
    R"("thursday":["07:00-13:30","15:30-20:00"],"friday":["07:00-20:00"],"saturday":["07:30-20:00"],"sunday":["07:30-13:00"]},)"
    R"("specific_hours":{"open":[],"close":[{"starts_at":"2024-12-25","ends_at":"2024-12-26"}]},)"
    R"("description_short":"Pain au levain \"maison\" depuis 1987","website_url":"https://boulangerie-lefevre.fr/",)"
    R"("facebook_url":null,"twitter_url":null,"google_location_id":"accounts/112233/locations/445566","is_closed":false,)"
    R"("created":1701094244.929678,"modified":1732724044.929678}})";

constexpr std::string_view kBusinessDeletedPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5","org_id":1042,"name":"Boulangerie Lef\u00e8vre","deleted_at":"2024-11-27T16:10:44.929678Z","reason":"closed permanently"}})";

constexpr std::string_view kMessagePayload =
    R"({"conversation":{"id":88123,"business_id":"5f2a4d3c8e1b9a0012c3d4e5","channel":"google_business_messages","status":"open",)"
    R"("consumer":{"first_name":"Ana\u00efs","last_name":"D\u00fcrr","img":"https://lh3.googleusercontent.com/a/ACg8ocK"}},)"
    R"("message":{"id":55012893,"sender_type":"Consumer","sender_label":"Ana\u00efs D\u00fcrr",)"
    R"("content":"Bonjour 👋 Avez-vous encore des \"galettes des rois\" ? Merci ! \ud83e\udd50 日本語\nÀ bientôt",)"
    R"("content_type":"TEXT","date":"2024-11-27T16:10:44.929678Z","is_deleted":false,"reactions":[{"emoji":"❤️","by":"business"}]}})";

constexpr std::string_view kLeadPayload =
    R"({"lead":{"id":"c0a8012e-7f3b-4d8e-9a61-2b5e3f1d9c44","business_id":"5f2a4d3c8e1b9a0012c3d4e5","source":"google_lead_form",)"
    R"("contact":{"name":"Jean-Fran\u00e7ois M\u00fcller","email":"jf.muller+devis@example.org","phone":"+33 6 12 34 56 78"},)"
    R"("message":"Bonjour,\r\nJe souhaite un devis pour 40 \"viennoiseries\" le 14/02.\r\nCordialement","consent":{"marketing":false,"terms":true},)"
    R"("utm":{"campaign":"noel_2024","medium":"cpc"},"score":0.87,"received_at":"2024-11-27T16:10:44.929678Z"}})";

const std::array<Sample, 6> kSamples = {{
    {"business_created", 1042, "evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5O", kBusinessPayload},
    {"business_updated", 1042, "evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5P", kBusinessPayload},
    {"business_deleted", 9223372036854775807, "evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5Q",
     kBusinessDeletedPayload},
    {"message_created", 77, "msg-55012893-created", kMessagePayload},
    {"message_updated", 77, "msg-55012893-updated@2024-11-27T16:11:02Z", kMessagePayload},
    {"lead_received", 1, "lead:c0a8012e-7f3b-4d8e-9a61-2b5e3f1d9c44", kLeadPayload},
}};

std::string event_json(const Sample& s) {
  return R"({"id":")" + std::string(s.id) + R"(","org_id":)" + std::to_string(s.org_id) +
         R"(,"type":")" + std::string(s.type) + R"(","payload":)" + std::string(s.payload) + "}";
}

std::string expected_body(std::string_view type, std::string_view payload) {
  return R"({"type":")" + std::string(type) + R"(","payload":)" + std::string(payload) + "}";
}

// An event with org_id 1, type business_created and the given payload text.
std::string with_payload(std::string_view payload) {
  return R"({"org_id":1,"type":"business_created","payload":)" + std::string(payload) + "}";
}

// An event whose fields come first, then a valid org_id, type and payload.
std::string with_fields(std::string_view fields) {
  return "{" + std::string(fields) + R"(,"org_id":1,"type":"business_created","payload":{}})";
}

class EnvelopeParserTest : public ::testing::Test {
 protected:
  tl::expected<Envelope, EnvelopeError> parse(std::string_view json) { return parser_.parse(json); }

  EnvelopeError error_of(std::string_view json) {
    const auto result = parser_.parse(json);
    EXPECT_FALSE(result.has_value()) << "accepted: " << json;
    return result ? EnvelopeError::kInvalidJson : result.error();
  }

  EventCatalogue catalogue_;
  EnvelopeParser parser_{catalogue_};
};

// ---------------------------------------------------------------------------------------------
// Accepted events.
// ---------------------------------------------------------------------------------------------

TEST_F(EnvelopeParserTest, AcceptsRealisticEventForEveryCatalogueType) {
  std::set<std::string_view> covered;
  for (const Sample& s : kSamples) {
    SCOPED_TRACE(s.type);
    ASSERT_TRUE(ReferenceJson::valid(s.payload));
    const std::string json = event_json(s);
    const auto envelope = parse(json);
    ASSERT_TRUE(envelope.has_value()) << reason_code(envelope.error());
    EXPECT_EQ(envelope->org_id, s.org_id);
    EXPECT_EQ(catalogue_.name(envelope->type), s.type);
    EXPECT_EQ(envelope->id, s.id);
    EXPECT_EQ(envelope->payload, s.payload);
    // The exact bytes, at the exact place: event_json() ends with the payload and one '}'.
    EXPECT_EQ(envelope->payload,
              std::string_view(json).substr(json.size() - 1 - s.payload.size(), s.payload.size()));
    covered.insert(catalogue_.name(envelope->type));
  }
  EXPECT_EQ(covered.size(), catalogue_.size());
}

TEST_F(EnvelopeParserTest, BuildsExactDeliveryBodyThatReparsesToTheSamePayload) {
  for (const Sample& s : kSamples) {
    SCOPED_TRACE(s.type);
    const auto envelope = parse(event_json(s));
    ASSERT_TRUE(envelope.has_value());
    const std::string_view type_name = catalogue_.name(envelope->type);
    const std::string body = build_delivery_body(type_name, envelope->payload);
    EXPECT_EQ(body, expected_body(s.type, s.payload));
    EXPECT_EQ(body.size(), delivery_body_size(type_name, envelope->payload));
    EXPECT_TRUE(ReferenceJson::valid(body));

    // The body is itself a valid envelope once an org_id is added.
    EnvelopeParser reparser(catalogue_);
    const std::string reparsed = R"({"org_id":5,)" + body.substr(1);
    const auto again = reparser.parse(reparsed);
    ASSERT_TRUE(again.has_value()) << reason_code(again.error());
    EXPECT_EQ(again->payload, s.payload);
    EXPECT_EQ(catalogue_.name(again->type), s.type);
  }
}

TEST_F(EnvelopeParserTest, AcceptsPrettyPrintedEventAndTrimsWhitespaceAroundPayload) {
  const std::string payload = "{\n\t\t\"a\" : [ 1 ,\t2 ] ,\r\n\t\t\"b\" : { }\n\t}";
  const std::string json = "\r\n \t{\n\t\"org_id\" :\t42 ,\n\t\"type\"\n:\n\"lead_received\",\n" +
                           ("\t\"payload\" \t:\r\n \t" + payload) +
                           " \t\r\n,\n\t\"id\"  :  \"x\"\n}\n\n\t ";
  const auto envelope = parse(json);
  ASSERT_TRUE(envelope.has_value()) << reason_code(envelope.error());
  EXPECT_EQ(envelope->org_id, 42);
  EXPECT_EQ(envelope->payload, payload);
  EXPECT_EQ(envelope->id, "x");
  EXPECT_EQ(build_delivery_body("lead_received", envelope->payload),
            R"({"type":"lead_received","payload":)" + payload + "}");
}

TEST_F(EnvelopeParserTest, TrimsWhitespaceWhenPayloadIsLastField) {
  const auto envelope = parse(R"({"org_id":1,"type":"business_created","payload":{"a":1}   })");
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(envelope->payload, R"({"a":1})");
}

TEST_F(EnvelopeParserTest, AcceptsEmptyPayloadObjects) {
  for (std::string_view payload : {"{}", "{ }", "{\n\t\r }"}) {
    const auto envelope = parse(with_payload(payload));
    ASSERT_TRUE(envelope.has_value());
    EXPECT_EQ(envelope->payload, payload);
    EXPECT_EQ(envelope->id, "");
    EXPECT_EQ(build_delivery_body("business_created", envelope->payload),
              R"({"type":"business_created","payload":)" + std::string(payload) + "}");
  }
}

TEST_F(EnvelopeParserTest, AcceptsKnownFieldsInEveryOrder) {
  std::array<std::string, 4> fields = {R"("org_id":7)", R"("type":"message_updated")",
                                       R"("id":"abc")", R"("payload":{"k":[1,{"z":null}]})"};
  std::sort(fields.begin(), fields.end());
  int permutations = 0;
  do {
    const std::string json =
        "{" + fields[0] + "," + fields[1] + "," + fields[2] + "," + fields[3] + "}";
    const auto envelope = parse(json);
    ASSERT_TRUE(envelope.has_value()) << json;
    EXPECT_EQ(envelope->org_id, 7);
    EXPECT_EQ(catalogue_.name(envelope->type), "message_updated");
    EXPECT_EQ(envelope->id, "abc");
    EXPECT_EQ(envelope->payload, R"({"k":[1,{"z":null}]})");
    ++permutations;
  } while (std::next_permutation(fields.begin(), fields.end()));
  EXPECT_EQ(permutations, 24);
}

TEST_F(EnvelopeParserTest, IgnoresUnknownTopLevelFieldsOfEveryKind) {
  const auto envelope = parse(
      R"({"v":2,"org_id":3,"meta":{"trace":[1,2.5e-3,{"x":"\u00e9\n"}],"ok":true},"type":"business_deleted",)"
      R"("payload":{"n":1},"source":"crm","n":null,"flag":false,"big":123456789012345678901234567890,"v":3})");
  ASSERT_TRUE(envelope.has_value()) << reason_code(envelope.error());
  EXPECT_EQ(envelope->payload, R"({"n":1})");
}

TEST_F(EnvelopeParserTest, PassesPayloadKeysThroughUntouchedIncludingDuplicates) {
  const std::string payload = R"({"a":1,"a":2,"org_id":"x","payload":[],"type":7,"\u0061":3})";
  const auto envelope = parse(with_payload(payload));
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(envelope->payload, payload);
}

TEST_F(EnvelopeParserTest, AcceptsBigNumbersInsidePayload) {
  for (std::string_view payload :
       {R"({"n":123456789012345678901234567890})", R"({"n":-98765432109876543210987654321})",
        R"({"n":1.7976931348623157e309})", R"({"n":-1e-400})", R"({"n":[18446744073709551616]})",
        R"({"n":0.000000000000000000000000000001})", R"({"n":1E+2,"m":-0,"o":0.0e0})"}) {
    const auto envelope = parse(with_payload(payload));
    ASSERT_TRUE(envelope.has_value()) << payload;
    EXPECT_EQ(envelope->payload, payload);
  }
}

TEST_F(EnvelopeParserTest, AcceptsEscapesAndMultibyteUtf8InPayload) {
  for (std::string_view payload :
       {R"({"s":"\" \\ \/ \b \f \n \r \t \u0000 \u00e9 \uD83D\uDE00"})",
        "{\"s\":\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\"}",
        "{\"\xC3\xA9t\xC3\xA9\":\"\x7F\"}"}) {
    const auto envelope = parse(with_payload(payload));
    ASSERT_TRUE(envelope.has_value()) << payload;
    EXPECT_EQ(envelope->payload, payload);
  }
}

TEST_F(EnvelopeParserTest, AcceptsOrgIdAtBothEndsOfItsRange) {
  const auto low = parse(R"({"org_id":1,"type":"business_created","payload":{}})");
  ASSERT_TRUE(low.has_value());
  EXPECT_EQ(low->org_id, 1);
  const auto high =
      parse(R"({"org_id":9223372036854775807,"type":"business_created","payload":{}})");
  ASSERT_TRUE(high.has_value());
  EXPECT_EQ(high->org_id, INT64_MAX);
}

TEST_F(EnvelopeParserTest, MatchesTypeAfterUnescapingIt) {
  const auto envelope = parse(R"({"org_id":1,"type":"business\u005fcreated","payload":{}})");
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(catalogue_.name(envelope->type), "business_created");
}

TEST_F(EnvelopeParserTest, RecognisesKnownKeysWrittenWithEscapes) {
  const auto envelope = parse(R"({"org\u005fid":9,"\u0074ype":"lead_received","p\u0061yload":{}})");
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(envelope->org_id, 9);
}

TEST_F(EnvelopeParserTest, AcceptsTypesAddedToTheCatalogue) {
  EventCatalogue catalogue;
  const auto added = catalogue.add("review_created");
  ASSERT_TRUE(added.has_value());
  EnvelopeParser parser(catalogue);
  const auto envelope = parser.parse(R"({"org_id":1,"type":"review_created","payload":{}})");
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(envelope->type, *added);
  EXPECT_EQ(error_of(R"({"org_id":1,"type":"review_created","payload":{}})"),
            EnvelopeError::kUnknownType);
}

// ---------------------------------------------------------------------------------------------
// Ids.
// ---------------------------------------------------------------------------------------------

TEST_F(EnvelopeParserTest, AcceptsIdsOfPrintableAsciiUpTo128Characters) {
  const std::string longest(kMaxEventIdLength, '~');
  for (const std::string& id : {"a"s, "!"s, longest, "evt_01HF8Z3K9Q"s, "a/b:c@d"s}) {
    const auto envelope = parse(with_fields(R"("id":")" + id + "\""));
    ASSERT_TRUE(envelope.has_value()) << id;
    EXPECT_EQ(envelope->id, id);
  }
}

TEST_F(EnvelopeParserTest, UnescapesIdBeforeCheckingIt) {
  const auto quoted = parse(with_fields(R"("id":"a\"b\\c\/d\u0041")"));
  ASSERT_TRUE(quoted.has_value());
  EXPECT_EQ(quoted->id, R"(a"b\c/dA)");
  // 128 characters once unescaped, though the raw token is longer.
  std::string escaped;
  for (int i = 0; i < 128; ++i) escaped += "\\u0041";
  const auto envelope = parse(with_fields(R"("id":")" + escaped + "\""));
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(envelope->id, std::string(128, 'A'));
}

TEST_F(EnvelopeParserTest, RefusesBadIds) {
  for (const std::string& id :
       {R"("")"s, "\"" + std::string(kMaxEventIdLength + 1, 'a') + "\"", R"("a b")"s, R"("a\tb")"s,
        R"("a\u0001b")"s, R"("\u007f")"s, R"("\u0000")"s, "\"caf\xC3\xA9\""s, R"("\u00e9")"s, "42"s,
        "null"s, "true"s, "[]"s, "{}"s, R"(["a"])"s}) {
    EXPECT_EQ(error_of(with_fields(R"("id":)" + id)), EnvelopeError::kBadId) << id;
  }
}

// ---------------------------------------------------------------------------------------------
// Wrong or missing fields.
// ---------------------------------------------------------------------------------------------

TEST_F(EnvelopeParserTest, RefusesOrgIdsThatAreNotPositiveInt64) {
  for (std::string_view org_id :
       {"0", "-1", "-0", "1.0", "1e3", "1E3", "10.5", "\"42\"", "9223372036854775808",
        "99999999999999999999", "18446744073709551616", "-9223372036854775808", "true", "null",
        "{}", "[1]", "0.0"}) {
    EXPECT_EQ(error_of(R"({"org_id":)" + std::string(org_id) +
                       R"(,"type":"business_created","payload":{}})"),
              EnvelopeError::kBadOrgId)
        << org_id;
  }
}

TEST_F(EnvelopeParserTest, RefusesMissingFields) {
  EXPECT_EQ(error_of(R"({"type":"business_created","payload":{}})"), EnvelopeError::kMissingOrgId);
  EXPECT_EQ(error_of(R"({"org_id":1,"payload":{}})"), EnvelopeError::kMissingType);
  EXPECT_EQ(error_of(R"({"org_id":1,"type":"business_created"})"), EnvelopeError::kMissingPayload);
  EXPECT_EQ(error_of("{}"), EnvelopeError::kMissingOrgId);
  EXPECT_EQ(error_of(R"({"Org_Id":1,"Type":"business_created","Payload":{}})"),
            EnvelopeError::kMissingOrgId);
}

TEST_F(EnvelopeParserTest, RefusesTypesThatAreNotStrings) {
  for (std::string_view type : {"42", "null", "true", "{}", "[\"business_created\"]"}) {
    EXPECT_EQ(error_of(R"({"org_id":1,"type":)" + std::string(type) + R"(,"payload":{}})"),
              EnvelopeError::kBadType)
        << type;
  }
}

TEST_F(EnvelopeParserTest, RefusesTypesOutsideTheCatalogue) {
  for (std::string_view type :
       {"", "Business_Created", "business_created ", "business", "review_created"}) {
    EXPECT_EQ(error_of(R"({"org_id":1,"type":")" + std::string(type) + R"(","payload":{}})"),
              EnvelopeError::kUnknownType)
        << type;
  }
}

TEST_F(EnvelopeParserTest, RefusesPayloadsThatAreNotObjects) {
  for (std::string_view payload : {"[]", "[{}]", "\"{}\"", "null", "1", "true"}) {
    EXPECT_EQ(error_of(with_payload(payload)), EnvelopeError::kBadPayload) << payload;
  }
}

TEST_F(EnvelopeParserTest, RefusesKnownFieldGivenTwice) {
  const std::string base = R"("org_id":1,"type":"business_created","id":"a","payload":{})";
  for (std::string_view extra :
       {R"("org_id":1)", R"("org_id":"x")", R"("type":"business_created")", R"("id":"a")",
        R"("payload":{})", R"("payload":[])", R"("org\u005fid":1)"}) {
    EXPECT_EQ(error_of("{" + base + "," + std::string(extra) + "}"), EnvelopeError::kDuplicateField)
        << extra;
    EXPECT_EQ(error_of("{" + std::string(extra) + "," + base + "}"), EnvelopeError::kDuplicateField)
        << extra;
  }
}

TEST_F(EnvelopeParserTest, AllowsUnknownTopLevelFieldGivenTwice) {
  EXPECT_TRUE(parse(with_fields(R"("x":1,"x":[2])")).has_value());
}

TEST_F(EnvelopeParserTest, ReportsTheSameErrorWhateverTheKeyOrder) {
  // Several problems at once: the first in enum order wins, not the first in the text.
  EXPECT_EQ(error_of(R"({"payload":[],"type":1,"id":""})"), EnvelopeError::kMissingOrgId);
  EXPECT_EQ(error_of(R"({"id":"","type":1,"payload":[]})"), EnvelopeError::kMissingOrgId);
  EXPECT_EQ(error_of(R"({"payload":[],"id":"","org_id":1,"type":"nope"})"),
            EnvelopeError::kUnknownType);
  EXPECT_EQ(error_of(R"({"payload":[],"org_id":1,"type":"lead_received","id":""})"),
            EnvelopeError::kBadId);
  EXPECT_EQ(error_of(R"({"payload":[],"payload":{},"org_id":0})"), EnvelopeError::kDuplicateField);
}

TEST_F(EnvelopeParserTest, ReportsInvalidJsonBeforeAnyFieldProblem) {
  EXPECT_EQ(error_of(R"({"org_id":"42","extra":tru})"), EnvelopeError::kInvalidJson);
  EXPECT_EQ(error_of(R"({"org_id":1,"org_id":1,"payload":{"a":nul}})"),
            EnvelopeError::kInvalidJson);
  EXPECT_EQ(error_of(R"({"type":5} x)"), EnvelopeError::kInvalidJson);
  EXPECT_EQ(error_of(R"([1,2,{"b":nul}])"), EnvelopeError::kInvalidJson);
}

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
// Size.
// ---------------------------------------------------------------------------------------------

TEST_F(EnvelopeParserTest, AcceptsExactlyMaxBytesAndRefusesOneMore) {
  const std::string json = with_payload(R"({"a":"0123456789"})");
  EnvelopeParser exact(catalogue_, {.max_event_bytes = json.size()});
  EXPECT_TRUE(exact.parse(json).has_value());
  EXPECT_EQ(exact.parse(json + " ").error(), EnvelopeError::kTooLarge);

  EnvelopeParser smaller(catalogue_, {.max_event_bytes = json.size() - 1});
  EXPECT_EQ(smaller.parse(json).error(), EnvelopeError::kTooLarge);
  // The size is checked before anything else, even for input that is not JSON at all.
  EXPECT_EQ(smaller.parse(std::string(json.size(), '\xFF')).error(), EnvelopeError::kTooLarge);
}

TEST_F(EnvelopeParserTest, AcceptsDefaultMaximumOf256KiB) {
  const std::string head = R"({"org_id":1,"type":"message_created","payload":{"s":")";
  const std::string tail = "\"}}";
  const std::string json =
      head + std::string(kDefaultMaxEventBytes - head.size() - tail.size(), 'x') + tail;
  ASSERT_EQ(json.size(), kDefaultMaxEventBytes);
  const auto envelope = parse(json);
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(envelope->payload.size(), kDefaultMaxEventBytes - head.size() + 5);
  EXPECT_EQ(error_of(json + "\n"), EnvelopeError::kTooLarge);
}

// ---------------------------------------------------------------------------------------------
// Reuse and lifetimes.
// ---------------------------------------------------------------------------------------------

TEST_F(EnvelopeParserTest, ViewsOutliveTheCallersBuffer) {
  Envelope envelope;
  {
    std::string json = event_json(kSamples[3]);
    const auto parsed = parse(json);
    ASSERT_TRUE(parsed.has_value());
    envelope = *parsed;
    std::fill(json.begin(), json.end(), 'X');
  }
  EXPECT_EQ(envelope.payload, kSamples[3].payload);
  EXPECT_EQ(envelope.id, kSamples[3].id);
}

TEST_F(EnvelopeParserTest, KeepsViewsOfTheLastParseCorrectAcrossManyCalls) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> pick(0, kSamples.size() - 1);
  const std::string big_payload = R"({"blob":")" + std::string(100000, 'b') + "\"}";
  for (int i = 0; i < 2000; ++i) {
    // Sizes jump up and down so the buffers grow while earlier views are being replaced.
    if (i % 97 == 0) {
      const auto big = parse(with_payload(big_payload));
      ASSERT_TRUE(big.has_value());
      EXPECT_EQ(big->payload, big_payload);
    }
    if (i % 5 == 0) {
      EXPECT_FALSE(parse(R"({"org_id":1,"type":"nope","payload":{}})"));
    }
    if (i % 7 == 0) {
      EXPECT_FALSE(parse("{\"org_id\":1,\"payload\":{\"a\":\xC0\x80}}"));
    }
    const Sample& s = kSamples[pick(rng)];
    const auto envelope = parse(event_json(s));
    ASSERT_TRUE(envelope.has_value());
    EXPECT_EQ(envelope->payload, s.payload);
    EXPECT_EQ(envelope->id, s.id);
    EXPECT_EQ(envelope->org_id, s.org_id);
    EXPECT_EQ(catalogue_.name(envelope->type), s.type);
  }
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

// ---------------------------------------------------------------------------------------------
// Delivery body and error names.
// ---------------------------------------------------------------------------------------------

TEST(DeliveryBodyTest, WritesExactlyTypeThenPayloadWithoutSpaces) {
  const std::string_view payload = R"({ "a" : [1, 2] })";
  const std::string expected = R"({"type":"lead_received","payload":{ "a" : [1, 2] }})";
  EXPECT_EQ(build_delivery_body("lead_received", payload), expected);
  EXPECT_EQ(delivery_body_size("lead_received", payload), expected.size());

  std::string out(expected.size() + 4, '#');
  EXPECT_EQ(write_delivery_body("lead_received", payload, out.data()), expected.size());
  EXPECT_EQ(out, expected + "####");
}

TEST(DeliveryBodyTest, HandlesEmptyViews) {
  EXPECT_EQ(build_delivery_body("a", std::string_view()), R"({"type":"a","payload":})");
  EXPECT_EQ(delivery_body_size("", ""), 22u);
}

TEST(EnvelopeErrorTest, HasStableDistinctReasonCodesAndPhrases) {
  const std::vector<std::pair<EnvelopeError, std::string_view>> codes = {
      {EnvelopeError::kTooLarge, "too_large"},
      {EnvelopeError::kInvalidJson, "invalid_json"},
      {EnvelopeError::kTooDeep, "too_deep"},
      {EnvelopeError::kNotObject, "not_object"},
      {EnvelopeError::kDuplicateField, "duplicate_field"},
      {EnvelopeError::kMissingOrgId, "missing_org_id"},
      {EnvelopeError::kBadOrgId, "bad_org_id"},
      {EnvelopeError::kMissingType, "missing_type"},
      {EnvelopeError::kBadType, "bad_type"},
      {EnvelopeError::kUnknownType, "unknown_type"},
      {EnvelopeError::kBadId, "bad_id"},
      {EnvelopeError::kMissingPayload, "missing_payload"},
      {EnvelopeError::kBadPayload, "bad_payload"},
  };
  std::set<std::string_view> phrases;
  for (const auto& [error, code] : codes) {
    EXPECT_EQ(reason_code(error), code);
    EXPECT_FALSE(to_string(error).empty());
    phrases.insert(to_string(error));
  }
  EXPECT_EQ(phrases.size(), codes.size());
}

TEST(JsonLibraryTest, ReportsSimdjsonVersion) {
  EXPECT_EQ(json_library_version().substr(0, 2), "3.");
}

}  // namespace
}  // namespace fanout::routing
