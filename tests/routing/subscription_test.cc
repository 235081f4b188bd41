#include "routing/subscription.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/routing/subscription_support.h"

namespace fanout::routing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// ---------------------------------------------------------------------------------------------
// validate(): the whole spec
// ---------------------------------------------------------------------------------------------

TEST(SubscriptionTest, ValidSpecBecomesUnstoredSubscription) {
  const EventCatalogue catalogue;
  const SubscriptionSpec spec = valid_spec();
  auto result = validate(spec, catalogue);
  ASSERT_TRUE(result.has_value());
  const Subscription& sub = *result;
  EXPECT_EQ(sub.id, 0);
  EXPECT_EQ(sub.created_at_us, 0);
  EXPECT_EQ(sub.updated_at_us, 0);
  EXPECT_EQ(sub.org_id, 42);
  EXPECT_EQ(sub.event_type, 1);  // business_updated
  EXPECT_EQ(sub.url, spec.url);
  EXPECT_EQ(sub.parts, (UrlParts{Scheme::kHttps, "hooks.example.com", 443, "/partoo?token=abc"}));
  EXPECT_EQ(sub.custom_headers, spec.custom_headers);
}

TEST(SubscriptionTest, KeepsUrlVerbatimButLowerCasesParsedHost) {
  const EventCatalogue catalogue;
  SubscriptionSpec spec = valid_spec();
  spec.url = "HTTPS://Hooks.Example.COM:8443/Path?Q=A";
  auto result = validate(spec, catalogue);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->url, "HTTPS://Hooks.Example.COM:8443/Path?Q=A");
  EXPECT_EQ(result->parts, (UrlParts{Scheme::kHttps, "hooks.example.com", 8443, "/Path?Q=A"}));
}

TEST(SubscriptionTest, KeepsHeaderNamesAndOrderAsGiven) {
  const EventCatalogue catalogue;
  SubscriptionSpec spec = valid_spec();
  spec.custom_headers = {{"x-b", "2"}, {"X-A", "1"}, {"X-c", ""}};
  auto result = validate(spec, catalogue);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->custom_headers, spec.custom_headers);
}

TEST(SubscriptionTest, AcceptsNoCustomHeaders) {
  const EventCatalogue catalogue;
  SubscriptionSpec spec = valid_spec();
  spec.custom_headers.clear();
  EXPECT_TRUE(validate(spec, catalogue).has_value());
}

TEST(SubscriptionTest, AcceptsOrgIdOne) {
  const EventCatalogue catalogue;
  SubscriptionSpec spec = valid_spec();
  spec.org_id = 1;
  EXPECT_TRUE(validate(spec, catalogue).has_value());
}

TEST(SubscriptionTest, RefusesZeroAndNegativeOrgId) {
  const EventCatalogue catalogue;
  for (std::int64_t org_id : {std::int64_t{0}, std::int64_t{-1}, INT64_MIN}) {
    SCOPED_TRACE(org_id);
    SubscriptionSpec spec = valid_spec();
    spec.org_id = org_id;
    auto result = validate(spec, catalogue);
    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error(), ElementsAre(Is("org_id", Rule::kOrgIdNotPositive)));
    EXPECT_THAT(result.error()[0].message, HasSubstr(std::to_string(org_id)));
  }
}

TEST(SubscriptionTest, RefusesEventTypeOutsideCatalogue) {
  const EventCatalogue catalogue;
  for (std::string name : {"business_exploded", "", "Business_Updated", "business_updated "}) {
    SCOPED_TRACE(name);
    SubscriptionSpec spec = valid_spec();
    spec.event_type = name;
    auto result = validate(spec, catalogue);
    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error(), ElementsAre(Is("event_type", Rule::kEventTypeUnknown)));
    EXPECT_THAT(result.error()[0].message, HasSubstr("lead_received"));
  }
}

TEST(SubscriptionTest, AcceptsEventTypeAddedToCatalogue) {
  EventCatalogue catalogue;
  ASSERT_TRUE(catalogue.add("review_created").has_value());
  SubscriptionSpec spec = valid_spec();
  spec.event_type = "review_created";
  auto result = validate(spec, catalogue);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->event_type, *catalogue.find("review_created"));
}

TEST(SubscriptionTest, ReportsEveryViolationInFieldOrder) {
  const EventCatalogue catalogue;
  SubscriptionSpec spec;
  spec.org_id = 0;
  spec.event_type = "nope";
  spec.url = "http://user@a_b.com:0/#top";
  spec.custom_headers = {{"Authorization", "x"}, {"X-Ok", " padded"}};
  auto result = validate(spec, catalogue);
  ASSERT_FALSE(result.has_value());
  EXPECT_THAT(
      result.error(),
      ElementsAre(Is("org_id", Rule::kOrgIdNotPositive), Is("event_type", Rule::kEventTypeUnknown),
                  Is("url", Rule::kUrlFragment), Is("url", Rule::kUrlInsecure),
                  Is("url", Rule::kUrlUserInfo), Is("url", Rule::kUrlBadHost),
                  Is("url", Rule::kUrlBadPort), Is("custom_headers", Rule::kHeaderKeyNoXPrefix),
                  Is("custom_headers", Rule::kHeaderValueEdgeSpace)));
}

TEST(SubscriptionTest, InsecureOptionReachesUrlCheck) {
  const EventCatalogue catalogue;
  SubscriptionSpec spec = valid_spec();
  spec.url = "http://127.0.0.1:8080/hook";
  EXPECT_FALSE(validate(spec, catalogue).has_value());
  auto result = validate(spec, catalogue, ValidationOptions{.allow_insecure_http = true});
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->parts, (UrlParts{Scheme::kHttp, "127.0.0.1", 8080, "/hook"}));
}

TEST(SubscriptionTest, EveryRuleHasADistinctSnakeCaseName) {
  std::set<std::string_view> names;
  const auto last = static_cast<int>(Rule::kHeaderValueEdgeSpace);
  for (int i = 0; i <= last; ++i) {
    const std::string_view name = rule_name(static_cast<Rule>(i));
    SCOPED_TRACE(name);
    EXPECT_FALSE(name.empty());
    EXPECT_NE(name, "unknown_rule");
    for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    names.insert(name);
  }
  EXPECT_EQ(names.size(), static_cast<std::size_t>(last + 1));
}

TEST(SubscriptionTest, RuleNamesAreTheDocumentedCodes) {
  EXPECT_EQ(rule_name(Rule::kOrgIdNotPositive), "org_id_not_positive");
  EXPECT_EQ(rule_name(Rule::kEventTypeUnknown), "event_type_unknown");
  EXPECT_EQ(rule_name(Rule::kUrlEmpty), "url_empty");
  EXPECT_EQ(rule_name(Rule::kUrlTooLong), "url_too_long");
  EXPECT_EQ(rule_name(Rule::kUrlBadCharacter), "url_bad_character");
  EXPECT_EQ(rule_name(Rule::kUrlMalformed), "url_malformed");
  EXPECT_EQ(rule_name(Rule::kUrlBadScheme), "url_bad_scheme");
  EXPECT_EQ(rule_name(Rule::kUrlInsecure), "url_insecure");
  EXPECT_EQ(rule_name(Rule::kUrlUserInfo), "url_user_info");
  EXPECT_EQ(rule_name(Rule::kUrlNoHost), "url_no_host");
  EXPECT_EQ(rule_name(Rule::kUrlBadHost), "url_bad_host");
  EXPECT_EQ(rule_name(Rule::kUrlBadPort), "url_bad_port");
  EXPECT_EQ(rule_name(Rule::kUrlFragment), "url_fragment");
  EXPECT_EQ(rule_name(Rule::kHeadersTooMany), "headers_too_many");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyEmpty), "header_key_empty");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyNoXPrefix), "header_key_no_x_prefix");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyReservedPrefix), "header_key_reserved_prefix");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyTooLong), "header_key_too_long");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyForbiddenChar), "header_key_forbidden_char");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyControlChar), "header_key_control_char");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyNonAscii), "header_key_non_ascii");
  EXPECT_EQ(rule_name(Rule::kHeaderKeyDuplicate), "header_key_duplicate");
  EXPECT_EQ(rule_name(Rule::kHeaderValueTooLong), "header_value_too_long");
  EXPECT_EQ(rule_name(Rule::kHeaderValueControlChar), "header_value_control_char");
  EXPECT_EQ(rule_name(Rule::kHeaderValueBadUtf8), "header_value_bad_utf8");
  EXPECT_EQ(rule_name(Rule::kHeaderValueEdgeSpace), "header_value_edge_space");
}

// ---------------------------------------------------------------------------------------------
// validate_custom_headers()
// ---------------------------------------------------------------------------------------------

std::vector<Header> numbered_headers(std::size_t n) {
  std::vector<Header> headers;
  for (std::size_t i = 0; i < n; ++i) headers.push_back({"X-H" + std::to_string(i), "v"});
  return headers;
}

TEST(CustomHeadersTest, AcceptsFiveHeaders) {
  EXPECT_THAT(header_violations(numbered_headers(5)), IsEmpty());
}

TEST(CustomHeadersTest, RefusesSixHeaders) {
  const auto v = header_violations(numbered_headers(6));
  EXPECT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeadersTooMany)));
  EXPECT_THAT(v[0].message, HasSubstr("6"));
}

TEST(CustomHeadersTest, StillChecksEachHeaderWhenTooMany) {
  auto headers = numbered_headers(6);
  headers[4].name = "Bad";
  EXPECT_THAT(header_violations(headers),
              ElementsAre(Is("custom_headers", Rule::kHeadersTooMany),
                          Is("custom_headers", Rule::kHeaderKeyNoXPrefix)));
}

TEST(CustomHeadersTest, RefusesEmptyKeyOnce) {
  EXPECT_THAT(key_violations(""), ElementsAre(Is("custom_headers", Rule::kHeaderKeyEmpty)));
}

TEST(CustomHeadersTest, RefusesKeyWithoutXPrefix) {
  for (std::string key : {"Authorization", "X", "XFoo", "X_Foo", "Y-Foo"}) {
    SCOPED_TRACE(key);
    EXPECT_THAT(key_violations(key), ElementsAre(Is("custom_headers", Rule::kHeaderKeyNoXPrefix)));
  }
}

TEST(CustomHeadersTest, AcceptsXPrefixInAnyCase) {
  EXPECT_THAT(key_violations("x-foo"), IsEmpty());
  EXPECT_THAT(key_violations("X-Foo"), IsEmpty());
}

TEST(CustomHeadersTest, RefusesReservedPartooPrefixInAnyCase) {
  for (std::string key : {"X-Partoo", "x-PARTOO-x", "X-PartooFoo", "x-partoo-signature-v1"}) {
    SCOPED_TRACE(key);
    const auto v = key_violations(key);
    EXPECT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyReservedPrefix)));
    EXPECT_THAT(v[0].message, HasSubstr(key));
  }
  EXPECT_THAT(key_violations("X-Partner"), IsEmpty());
}

TEST(CustomHeadersTest, AcceptsKeyOf128Characters) {
  EXPECT_THAT(key_violations("X-" + std::string(126, 'k')), IsEmpty());
}

TEST(CustomHeadersTest, RefusesKeyOf129Characters) {
  const auto v = key_violations("X-" + std::string(127, 'k'));
  EXPECT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyTooLong)));
  EXPECT_THAT(v[0].message, HasSubstr("129"));
}

class ForbiddenKeyCharTest : public ::testing::TestWithParam<char> {};

TEST_P(ForbiddenKeyCharTest, RefusesCharacterAndNamesIt) {
  const char c = GetParam();
  const auto v = key_violations(std::string("X-Ab") + c + "d");
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyForbiddenChar)));
  EXPECT_THAT(v[0].message, HasSubstr(std::string("character '") + c + "'"));
}

INSTANTIATE_TEST_SUITE_P(ContractList, ForbiddenKeyCharTest,
                         ::testing::Values(' ', '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"',
                                           '/', '[', ']', '?', '=', '{', '}'));

TEST(CustomHeadersTest, NamesForbiddenCharacterInMessage) {
  const auto v = key_violations("X-A:b");
  ASSERT_THAT(v, SizeIs(1));
  EXPECT_EQ(v[0].message, "custom header key \"X-A:b\" contains the forbidden character ':'");
}

TEST(CustomHeadersTest, ReportsEachRuleOncePerKey) {
  const auto v = key_violations("X-a:b:c/d:e");
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyForbiddenChar)));
  EXPECT_THAT(v[0].message, HasSubstr("':', '/'"));
}

TEST(CustomHeadersTest, AcceptsTokenCharactersInKey) {
  EXPECT_THAT(key_violations("X-a!#$%&'*+-.^_`|~09AZ"), IsEmpty());
}

class KeyControlByteTest : public ::testing::TestWithParam<char> {};

TEST_P(KeyControlByteTest, RefusesControlByteAsHexEscape) {
  const auto v = key_violations(std::string("X-Ab") + GetParam() + "d");
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyControlChar)));
  char hex[8];
  std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned char>(GetParam()));
  EXPECT_THAT(v[0].message, HasSubstr(hex));
}

INSTANTIATE_TEST_SUITE_P(Bytes, KeyControlByteTest,
                         ::testing::Values('\x00', '\x1f', '\x7f', '\t', '\r', '\n'));

TEST(CustomHeadersTest, RefusesNonAsciiKey) {
  const auto v = key_violations("X-Caf\xc3\xa9");
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyNonAscii)));
  EXPECT_THAT(v[0].message, HasSubstr("\\xC3"));
}

TEST(CustomHeadersTest, ReportsDifferentKeyRulesTogether) {
  EXPECT_THAT(key_violations("Bad Key\x01\xff" + std::string(130, 'k')),
              ElementsAre(Is("custom_headers", Rule::kHeaderKeyNoXPrefix),
                          Is("custom_headers", Rule::kHeaderKeyTooLong),
                          Is("custom_headers", Rule::kHeaderKeyForbiddenChar),
                          Is("custom_headers", Rule::kHeaderKeyControlChar),
                          Is("custom_headers", Rule::kHeaderKeyNonAscii)));
}

TEST(CustomHeadersTest, RefusesKeysThatDifferOnlyInCase) {
  const auto v = header_violations({{"X-Token", "a"}, {"x-token", "b"}});
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyDuplicate)));
  EXPECT_THAT(v[0].message, HasSubstr("\"x-token\""));
  EXPECT_THAT(v[0].message, HasSubstr("\"X-Token\""));
}

TEST(CustomHeadersTest, ReportsEachLaterDuplicateAgainstTheFirst) {
  const auto v =
      header_violations({{"X-A", "1"}, {"X-B", "2"}, {"x-a", "3"}, {"X-b", "4"}, {"X-A", "5"}});
  ASSERT_THAT(v, SizeIs(3));
  for (const auto& violation : v)
    EXPECT_THAT(violation, Is("custom_headers", Rule::kHeaderKeyDuplicate));
  EXPECT_THAT(v[0].message, HasSubstr("\"x-a\" repeats the key \"X-A\""));
  EXPECT_THAT(v[1].message, HasSubstr("\"X-b\" repeats the key \"X-B\""));
  EXPECT_THAT(v[2].message, HasSubstr("\"X-A\" repeats the key \"X-A\""));
}

TEST(CustomHeadersTest, FindsDuplicatesAmongManyHeaders) {
  auto headers = numbered_headers(20);
  headers[17].name = "x-h3";
  headers[19].name = "X-H3";
  const auto v = header_violations(headers);
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeadersTooMany),
                             Is("custom_headers", Rule::kHeaderKeyDuplicate),
                             Is("custom_headers", Rule::kHeaderKeyDuplicate)));
  EXPECT_THAT(v[1].message, HasSubstr("\"x-h3\" repeats the key \"X-H3\""));
  EXPECT_THAT(v[2].message, HasSubstr("\"X-H3\" repeats the key \"X-H3\""));
}

TEST(CustomHeadersTest, DoesNotCountEmptyKeysAsDuplicates) {
  EXPECT_THAT(header_violations({{"", "a"}, {"", "b"}}),
              ElementsAre(Is("custom_headers", Rule::kHeaderKeyEmpty),
                          Is("custom_headers", Rule::kHeaderKeyEmpty)));
}

TEST(CustomHeadersTest, AcceptsEmptyValue) {
  EXPECT_THAT(value_violations(""), IsEmpty());
}

TEST(CustomHeadersTest, AcceptsValueOf512AsciiCharacters) {
  EXPECT_THAT(value_violations(std::string(512, 'v')), IsEmpty());
}

TEST(CustomHeadersTest, RefusesValueOf513AsciiCharacters) {
  const auto v = value_violations(std::string(513, 'v'));
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderValueTooLong)));
  EXPECT_THAT(v[0].message, HasSubstr("513"));
  EXPECT_THAT(v[0].message, HasSubstr("\"X-Value\""));
}

TEST(CustomHeadersTest, CountsValueLengthInCodePointsNotBytes) {
  // "é" is two bytes, "€" three, "😀" four: 512 of each is fine, 513 is not.
  for (std::string_view unit : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
    SCOPED_TRACE(unit);
    EXPECT_THAT(value_violations(repeat(unit, 512)), IsEmpty());
    EXPECT_THAT(value_violations(repeat(unit, 513)),
                ElementsAre(Is("custom_headers", Rule::kHeaderValueTooLong)));
  }
  EXPECT_THAT(value_violations(repeat("a\xc3\xa9", 256)), IsEmpty());
}

class ValueControlByteTest : public ::testing::TestWithParam<char> {};

TEST_P(ValueControlByteTest, RefusesControlByte) {
  const auto v = value_violations(std::string("ab") + GetParam() + "cd");
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderValueControlChar)));
  char hex[8];
  std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned char>(GetParam()));
  EXPECT_THAT(v[0].message, HasSubstr(hex));
}

INSTANTIATE_TEST_SUITE_P(Bytes, ValueControlByteTest,
                         ::testing::Values('\x00', '\x1f', '\x7f', '\t', '\r', '\n'));

class BadUtf8ValueTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BadUtf8ValueTest, RefusesValue) {
  EXPECT_THAT(value_violations("ok" + GetParam() + "ok"),
              ElementsAre(Is("custom_headers", Rule::kHeaderValueBadUtf8)));
}

INSTANTIATE_TEST_SUITE_P(Sequences, BadUtf8ValueTest,
                         ::testing::Values("\xc0\xaf",          // overlong '/'
                                           "\xc1\xbf",          // overlong
                                           "\xe0\x80\xaf",      // overlong, 3 bytes
                                           "\xf0\x80\x80\xaf",  // overlong, 4 bytes
                                           "\xed\xa0\x80",      // surrogate U+D800
                                           "\xed\xbf\xbf",      // surrogate U+DFFF
                                           "\xf4\x90\x80\x80",  // U+110000
                                           "\xf5\x80\x80\x80",  // lead byte past F4
                                           "\xff",              // never in UTF-8
                                           "\x80",              // lone continuation
                                           "\xe2\x82",          // truncated
                                           "\xc3"));            // truncated

TEST(CustomHeadersTest, RefusesTruncatedSequenceAtEndOfValue) {
  EXPECT_THAT(value_violations("ok\xf0\x9f\x98"),
              ElementsAre(Is("custom_headers", Rule::kHeaderValueBadUtf8)));
}

TEST(CustomHeadersTest, AcceptsUtf8Boundaries) {
  for (std::string s : {"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
                        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"}) {
    SCOPED_TRACE(s);
    EXPECT_THAT(value_violations(s), IsEmpty());
  }
}

TEST(CustomHeadersTest, RefusesLeadingOrTrailingSpaceOnce) {
  for (std::string value : {" v", "v ", " v ", " "}) {
    SCOPED_TRACE(value);
    EXPECT_THAT(value_violations(value),
                ElementsAre(Is("custom_headers", Rule::kHeaderValueEdgeSpace)));
  }
  EXPECT_THAT(value_violations("a b"), IsEmpty());
}

TEST(CustomHeadersTest, NeverEchoesValueInMessages) {
  const std::string value = " hunter2\x01\xff" + std::string(600, 'x') + " ";
  const auto v = value_violations(value);
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderValueTooLong),
                             Is("custom_headers", Rule::kHeaderValueControlChar),
                             Is("custom_headers", Rule::kHeaderValueBadUtf8),
                             Is("custom_headers", Rule::kHeaderValueEdgeSpace)));
  for (const auto& violation : v) EXPECT_THAT(violation.message, Not(HasSubstr("hunter2")));
}

TEST(CustomHeadersTest, ChecksValueEvenWhenKeyIsEmpty) {
  const auto v = header_violations({{"", "\t"}});
  ASSERT_THAT(v, ElementsAre(Is("custom_headers", Rule::kHeaderKeyEmpty),
                             Is("custom_headers", Rule::kHeaderValueControlChar)));
  EXPECT_THAT(v[1].message, HasSubstr("#1"));
}

}  // namespace
}  // namespace fanout::routing
