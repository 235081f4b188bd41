// The subscription validation tests (subscription_test.cc, subscription_url_test.cc): a
// matcher on a violation's field and rule, a valid spec, and each validator's violations alone.
#pragma once

#include <gmock/gmock.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routing/subscription.h"

namespace fanout::routing {

// A violation matcher on what the API promises: the field and the rule code.
inline auto Is(std::string_view field, Rule rule) {
  return ::testing::AllOf(::testing::Field(&Violation::field, std::string(field)),
                          ::testing::Field(&Violation::rule, rule));
}

inline SubscriptionSpec valid_spec() {
  SubscriptionSpec spec;
  spec.org_id = 42;
  spec.event_type = "business_updated";
  spec.url = "https://hooks.example.com/partoo?token=abc";
  spec.custom_headers = {{"X-Api-Key", "secret"}, {"X-Tenant", "acme"}};
  return spec;
}

inline std::vector<Violation> url_violations(std::string_view url, ValidationOptions options = {}) {
  auto result = validate_url(url, options);
  if (result) return {};
  return result.error();
}

inline std::vector<Violation> header_violations(std::vector<Header> headers) {
  return validate_custom_headers(headers);
}

inline std::vector<Violation> key_violations(std::string key) {
  return header_violations({{std::move(key), "v"}});
}

inline std::vector<Violation> value_violations(std::string value) {
  return header_violations({{"X-Value", std::move(value)}});
}

inline std::string repeat(std::string_view unit, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += unit;
  return out;
}

}  // namespace fanout::routing
