// validate_url() (routing/subscription.h): length, bytes, scheme, user info, host, port,
// fragment, and the origin and target it parses. The rest of a subscription's rules:
// subscription_test.cc.
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

// ---------------------------------------------------------------------------------------------
// validate_url()
// ---------------------------------------------------------------------------------------------

TEST(UrlValidationTest, AcceptsUrlOfExactly2048Bytes) {
  const std::string prefix = "https://a.example/";
  const std::string url = prefix + std::string(kMaxUrlBytes - prefix.size(), 'p');
  ASSERT_EQ(url.size(), 2048u);
  EXPECT_TRUE(validate_url(url).has_value());
}

TEST(UrlValidationTest, RefusesUrlOf2049Bytes) {
  const std::string prefix = "https://a.example/";
  const std::string url = prefix + std::string(kMaxUrlBytes + 1 - prefix.size(), 'p');
  const auto v = url_violations(url);
  EXPECT_THAT(v, ElementsAre(Is("url", Rule::kUrlTooLong)));
  EXPECT_THAT(v[0].message, HasSubstr("2049"));
}

TEST(UrlValidationTest, RefusesEmptyUrl) {
  EXPECT_THAT(url_violations(""), ElementsAre(Is("url", Rule::kUrlEmpty)));
}

TEST(UrlValidationTest, RefusesSpaceControlAndNonAsciiBytes) {
  for (std::string bad : {std::string(" "), std::string(1, '\0'), std::string("\x1f"),
                          std::string("\x7f"), std::string("\t"), std::string("\xc3\xa9")}) {
    const std::string url = "https://a.example/p" + bad + "q";
    SCOPED_TRACE(url);
    const auto v = url_violations(url);
    EXPECT_THAT(v, ElementsAre(Is("url", Rule::kUrlBadCharacter)));
    EXPECT_THAT(v[0].message, HasSubstr("percent-encode"));
  }
}

TEST(UrlValidationTest, ShowsUnprintableByteAsHexEscape) {
  const auto v = url_violations(std::string("https://a.example/\x01"));
  ASSERT_THAT(v, ElementsAre(Is("url", Rule::kUrlBadCharacter)));
  EXPECT_THAT(v[0].message, HasSubstr("\\x01"));
}

TEST(UrlValidationTest, RefusesUrlWithoutSchemeSeparator) {
  for (std::string url : {"hooks.example.com/x", "https:/a.example", "https:a.example",
                          "://a.example", "a.example/x?next=https://b.example", "1https://a.b"}) {
    SCOPED_TRACE(url);
    EXPECT_THAT(url_violations(url), ElementsAre(Is("url", Rule::kUrlMalformed)));
  }
}

TEST(UrlValidationTest, DoesNotEchoMalformedUrl) {
  const auto v = url_violations("admin:hunter2@hooks.example.com/x");
  ASSERT_THAT(v, ElementsAre(Is("url", Rule::kUrlMalformed)));
  EXPECT_THAT(v[0].message, Not(HasSubstr("hunter2")));
  EXPECT_THAT(v[0].message, HasSubstr("https://host"));
}

TEST(UrlValidationTest, RefusesHttpWithoutInsecureMode) {
  const auto v = url_violations("http://a.example/hook");
  ASSERT_THAT(v, ElementsAre(Is("url", Rule::kUrlInsecure)));
  EXPECT_THAT(v[0].message, HasSubstr("https:// is required"));
  EXPECT_THAT(v[0].message, HasSubstr("local tests only"));
}

TEST(UrlValidationTest, AcceptsHttpInInsecureModeOnPort80) {
  auto parts = validate_url("http://a.example/hook", {.allow_insecure_http = true});
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(*parts, (UrlParts{Scheme::kHttp, "a.example", 80, "/hook"}));
}

TEST(UrlValidationTest, DefaultsHttpsToPort443) {
  auto parts = validate_url("https://a.example/hook");
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(parts->scheme, Scheme::kHttps);
  EXPECT_EQ(parts->port, 443);
}

TEST(UrlValidationTest, ComparesSchemeIgnoringCase) {
  EXPECT_TRUE(validate_url("HtTpS://a.example").has_value());
  EXPECT_THAT(url_violations("HTTP://a.example"), ElementsAre(Is("url", Rule::kUrlInsecure)));
  EXPECT_TRUE(validate_url("HTTP://a.example", {.allow_insecure_http = true}).has_value());
}

TEST(UrlValidationTest, RefusesOtherSchemesEvenInInsecureMode) {
  for (std::string url : {"ftp://a.example/f", "wss://a.example/", "file:///etc/passwd"}) {
    SCOPED_TRACE(url);
    const auto v = url_violations(url, {.allow_insecure_http = true});
    ASSERT_THAT(v, Not(IsEmpty()));
    EXPECT_THAT(v[0], Is("url", Rule::kUrlBadScheme));
  }
  EXPECT_THAT(url_violations("ftp://a.example/f"), ElementsAre(Is("url", Rule::kUrlBadScheme)));
}

TEST(UrlValidationTest, RefusesUserInfoWithoutEchoingIt) {
  for (std::string url :
       {"https://user:hunter2@a.example/", "https://hunter2@a.example", "https://@a.example"}) {
    SCOPED_TRACE(url);
    const auto v = url_violations(url);
    ASSERT_THAT(v, ElementsAre(Is("url", Rule::kUrlUserInfo)));
    EXPECT_THAT(v[0].message, Not(HasSubstr("hunter2")));
  }
}

TEST(UrlValidationTest, RefusesMissingHost) {
  for (std::string url : {"https://", "https:///path", "https://:443/", "https://?q=1",
                          "https://user@/x", "https://[]/"}) {
    SCOPED_TRACE(url);
    const auto v = url_violations(url);
    ASSERT_THAT(v, Not(IsEmpty()));
    EXPECT_THAT(v.back(), Is("url", Rule::kUrlNoHost));
  }
}

class UrlBadHostTest : public ::testing::TestWithParam<std::string> {};

TEST_P(UrlBadHostTest, RefusesHost) {
  const std::string url = "https://" + GetParam() + "/hook";
  EXPECT_THAT(url_violations(url), ElementsAre(Is("url", Rule::kUrlBadHost)));
}

INSTANTIATE_TEST_SUITE_P(
    Hosts, UrlBadHostTest,
    ::testing::Values(std::string(64, 'a') + ".example",              // label of 64
                      "-a.example", "a-.example", "a.-b.example",     // edge hyphens
                      "a_b.example", "a%41.example", "a!.example",    // not [A-Za-z0-9-]
                      "a..example", ".a.example", "a.example.",       // empty labels
                      repeat("abcdefghi.", 25) + "abcd",              // 254 characters
                      "256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4",  // not dotted IPv4
                      "123", "a.123", "0x7f.0.0.1", "0x7f000001", "1.2.3.4.", "[::1",
                      "[fe80::1%eth0]", "[fe80::1%25eth0]",  // bad IPv6
                      "[1.2.3.4]", "[::g]", "[v1.x]", "[::1]x"));

TEST(UrlValidationTest, NamesTheBadHostCharacter) {
  const auto v = url_violations("https://hooks_crm.example/");
  ASSERT_THAT(v, ElementsAre(Is("url", Rule::kUrlBadHost)));
  EXPECT_THAT(v[0].message, HasSubstr("\"hooks_crm.example\""));
  EXPECT_THAT(v[0].message, HasSubstr("character '_'"));
}

class UrlGoodHostTest : public ::testing::TestWithParam<std::tuple<std::string, UrlParts>> {};

TEST_P(UrlGoodHostTest, ParsesOrigin) {
  const auto& [url, expected] = GetParam();
  auto parts = validate_url(url);
  ASSERT_TRUE(parts.has_value()) << parts.error()[0].message;
  EXPECT_EQ(*parts, expected);
}

INSTANTIATE_TEST_SUITE_P(
    Hosts, UrlGoodHostTest,
    ::testing::Values(
        std::make_tuple("https://192.0.2.10/h", UrlParts{Scheme::kHttps, "192.0.2.10", 443, "/h"}),
        std::make_tuple("https://[::1]/h", UrlParts{Scheme::kHttps, "::1", 443, "/h"}),
        std::make_tuple("https://[2001:DB8::1]:8443/h",
                        UrlParts{Scheme::kHttps, "2001:db8::1", 8443, "/h"}),
        std::make_tuple("https://[::ffff:192.0.2.1]",
                        UrlParts{Scheme::kHttps, "::ffff:192.0.2.1", 443, "/"}),
        std::make_tuple("https://API.Example.COM/h",
                        UrlParts{Scheme::kHttps, "api.example.com", 443, "/h"}),
        std::make_tuple("https://localhost:1/", UrlParts{Scheme::kHttps, "localhost", 1, "/"}),
        std::make_tuple("https://xn--bcher-kva.example/",
                        UrlParts{Scheme::kHttps, "xn--bcher-kva.example", 443, "/"}),
        std::make_tuple("https://a-b.c0.example/",
                        UrlParts{Scheme::kHttps, "a-b.c0.example", 443, "/"}),
        std::make_tuple("https://" + std::string(63, 'a') + ".example/",
                        UrlParts{Scheme::kHttps, std::string(63, 'a') + ".example", 443, "/"}),
        std::make_tuple("https://" + repeat("abcdefghi.", 25) + "abc/",
                        UrlParts{Scheme::kHttps, repeat("abcdefghi.", 25) + "abc", 443, "/"})));

class UrlBadPortTest : public ::testing::TestWithParam<std::string> {};

TEST_P(UrlBadPortTest, RefusesPort) {
  for (std::string host : {"a.example", "[::1]"}) {
    const std::string url = "https://" + host + ":" + GetParam() + "/hook";
    SCOPED_TRACE(url);
    EXPECT_THAT(url_violations(url), ElementsAre(Is("url", Rule::kUrlBadPort)));
  }
}

INSTANTIATE_TEST_SUITE_P(Ports, UrlBadPortTest,
                         ::testing::Values("0", "65536", "", "+1", "-1", "1a", "0x50", "80:80",
                                           "99999999999999999999999"));

TEST(UrlValidationTest, AcceptsPortBounds) {
  auto high = validate_url("https://a.example:65535/");
  ASSERT_TRUE(high.has_value());
  EXPECT_EQ(high->port, 65535);
  auto low = validate_url("https://a.example:1");
  ASSERT_TRUE(low.has_value());
  EXPECT_EQ(low->port, 1);
}

TEST(UrlValidationTest, RefusesFragment) {
  for (std::string url :
       {"https://a.example/h#top", "https://a.example#", "https://a.example/?q#"}) {
    SCOPED_TRACE(url);
    EXPECT_THAT(url_violations(url), ElementsAre(Is("url", Rule::kUrlFragment)));
  }
}

TEST(UrlValidationTest, ComputesTargetFromPathAndQuery) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"https://a.example", "/"},
      {"https://a.example/", "/"},
      {"https://a.example?x=1", "/?x=1"},
      {"https://a.example:8443?x=1", "/?x=1"},
      {"https://a.example/p/q?x=1&y=https://b", "/p/q?x=1&y=https://b"},
      {"https://a.example/p?", "/p?"},
      {"https://a.example/a@b", "/a@b"},
  };
  for (const auto& [url, target] : cases) {
    SCOPED_TRACE(url);
    auto parts = validate_url(url);
    ASSERT_TRUE(parts.has_value());
    EXPECT_EQ(parts->target, target);
  }
}

TEST(UrlValidationTest, ReportsTooLongAlongsideStructuralProblems) {
  const std::string url = "ftp://a.example/" + std::string(kMaxUrlBytes, 'p');
  EXPECT_THAT(url_violations(url),
              ElementsAre(Is("url", Rule::kUrlTooLong), Is("url", Rule::kUrlBadScheme)));
}

}  // namespace
}  // namespace fanout::routing
