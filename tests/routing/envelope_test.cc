// What the envelope parser accepts, and its refusals of well-formed JSON (fields, ids, size),
// its views, the delivery body and the error names. Malformed JSON, depth and the differential
// check against the reference validator: envelope_syntax_test.cc.
#include "routing/envelope.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/routing/envelope_support.h"

namespace fanout::routing {
namespace {

using namespace std::string_literals;

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
