// Fuzz target: the webhook management API's JSON bodies (tools/fanoutd/api_webhooks.cc): what POST
// /v2/webhooks and tryout parse (api_detail::parse_items) and what PUT/PATCH /v2/webhooks/{id}
// parse (api_detail::parse_update), without the store.
//
// The first byte chooses the call and the configuration (bit 0: update instead of create; bit 1:
// insecure mode; bit 2: allowed_ports "443, 8000-8100" instead of the default); the rest is the
// body.
//
// Invariants, beyond "no crash, no sanitizer report":
//   - every subscription a body yields obeys docs/webhook-contract.md §1 (checked here
//   independently of
//     routing/subscription.cc), belongs to the caller's organisation, has an allowed port, and
//     validates again to itself; a create yields 1 to 100 of them; an update keeps the
//     organisation and the event type;
//   - a refused body has errors, each with a message, and its 400 answer is valid JSON of
//     Partoo's shape {"error":{"json":{field: message}}} with one key per field.
#include <simdjson.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "tools/fanoutd/api_internal.h"

namespace {

using fanout::daemon::Api;
using fanout::daemon::Config;
namespace routing = fanout::routing;
namespace detail = fanout::daemon::api_detail;

constexpr std::int64_t kOrg = 42;

struct Fixture {
  routing::EventCatalogue catalogue;
  simdjson::dom::parser parser;     // the API's own, reused as Api::json_ is
  simdjson::dom::parser reference;  // reads the answers back
  routing::Subscription current;    // what an update changes
  Fixture() {
    auto s = routing::validate(
        {kOrg, "business_updated", "https://hooks.example.com/partoo", {{"X-Token", "s3cr3t"}}},
        catalogue);
    FUZZ_CHECK(s.has_value(), "the fixture's subscription is valid");
    current = *s;
    current.id = 7;
  }
};

bool istarts_with(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

bool ieq(std::string_view a, std::string_view b) {
  return a.size() == b.size() && istarts_with(a, b);
}

// docs/webhook-contract.md §1, written out again rather than calling routing::validate.
void check_subscription(const Fixture& f, const Config& config, const routing::Subscription& s) {
  FUZZ_CHECK(s.org_id == kOrg, "the caller's organisation");
  FUZZ_CHECK(s.event_type < f.catalogue.size(), "an event type of the catalogue");
  FUZZ_CHECK(!s.url.empty() && s.url.size() <= routing::kMaxUrlBytes, "url of 1..2048 bytes");
  for (const char c : s.url) {
    const auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u > 0x20 && u < 0x7f, "url without space, control or non-ASCII bytes");
  }
  if (s.parts.scheme == routing::Scheme::kHttps) {
    FUZZ_CHECK(istarts_with(s.url, "https://"), "https URL");
  } else {
    FUZZ_CHECK(config.engine.insecure && istarts_with(s.url, "http://"), "http only if insecure");
  }
  FUZZ_CHECK(!s.parts.host.empty(), "a host");
  const std::size_t authority = s.url.find("://") + 3;
  const std::size_t authority_end = s.url.find_first_of("/?#", authority);
  FUZZ_CHECK(s.url.substr(authority, authority_end - authority).find('@') == std::string::npos,
             "no user-info part");
  FUZZ_CHECK(fanout::daemon::port_allowed(config.allowed_ports, s.parts.port), "allowed port");
  FUZZ_CHECK(s.custom_headers.size() <= routing::kMaxCustomHeaders, "at most 5 headers");
  for (std::size_t i = 0; i < s.custom_headers.size(); ++i) {
    const routing::Header& h = s.custom_headers[i];
    FUZZ_CHECK(!h.name.empty() && h.name.size() <= routing::kMaxHeaderKeyLength,
               "key of 1..128 characters");
    FUZZ_CHECK(istarts_with(h.name, "x-") && !istarts_with(h.name, "x-partoo"),
               "key starts with X- and not X-Partoo");
    for (const char c : h.name) {
      const auto u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u > 0x20 && u < 0x7f, "key of visible ASCII");
      FUZZ_CHECK(std::string_view("()<>@,;:\\\"/[]?={}").find(c) == std::string_view::npos,
                 "no forbidden character in a key");
    }
    std::size_t chars = 0;
    for (const char c : h.value) {
      const auto u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u >= 0x20 && u != 0x7f, "value without control characters");
      if ((u & 0xc0) != 0x80) ++chars;
    }
    FUZZ_CHECK(chars <= routing::kMaxHeaderValueLength, "value of at most 512 characters");
    FUZZ_CHECK(h.value.empty() || (h.value.front() != ' ' && h.value.back() != ' '),
               "no space at either end of a value");
    for (std::size_t j = 0; j < i; ++j) {
      FUZZ_CHECK(!ieq(h.name, s.custom_headers[j].name), "no two keys equal but for case");
    }
  }
  // validate() is a fixed point: what it made validates again to the same thing.
  const routing::SubscriptionSpec spec{s.org_id, std::string(f.catalogue.name(s.event_type)), s.url,
                                       s.custom_headers};
  auto again = routing::validate(
      spec, f.catalogue, routing::ValidationOptions{.allow_insecure_http = config.engine.insecure});
  FUZZ_CHECK(again.has_value(), "a valid subscription validates again");
  FUZZ_CHECK(again->url == s.url && again->parts == s.parts &&
                 again->custom_headers == s.custom_headers && again->event_type == s.event_type,
             "validation gives the same subscription again");
}

void check_refusal(Fixture& f, const Api::FieldErrors& errors) {
  FUZZ_CHECK(!errors.empty(), "a refusal says why");
  // A field is named as the client spelled it, so an unknown key "" is reported as "".
  for (const auto& [field, message] : errors) FUZZ_CHECK(!message.empty(), "each error says why");
  Api::Reply reply;
  detail::set_field_errors(reply, errors);
  FUZZ_CHECK(reply.status == 400, "a refused body is a 400");
  simdjson::dom::element root;
  FUZZ_CHECK(!f.reference.parse(reply.body).get(root), "the 400 answer is valid JSON");
  simdjson::dom::object fields;
  FUZZ_CHECK(!root["error"]["json"].get_object().get(fields), "Partoo's error shape");
  std::size_t n = 0;
  for (auto field : fields) {
    std::string_view message;
    FUZZ_CHECK(!field.value.get_string().get(message), "each message is a string");
    ++n;
  }
  FUZZ_CHECK(n == errors.size(), "one key per field");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture* f = new Fixture;  // kept for the process, as the daemon keeps its parser
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  Config config;
  config.engine.insecure = (mode & 2) != 0;
  if ((mode & 4) != 0) config.allowed_ports = {"443", "8000-8100"};

  Api::FieldErrors errors;
  if ((mode & 1) == 0) {
    std::vector<routing::Subscription> items;
    if (detail::parse_items(f->parser, body, kOrg, f->catalogue, config, items, errors)) {
      FUZZ_CHECK(errors.empty(), "no errors when accepted");
      FUZZ_CHECK(!items.empty() && items.size() <= 100, "1 to 100 items");
      for (const auto& s : items) check_subscription(*f, config, s);
    } else {
      check_refusal(*f, errors);
    }
  } else {
    routing::Subscription updated;
    if (detail::parse_update(f->parser, body, f->current, f->catalogue, config, updated, errors)) {
      FUZZ_CHECK(errors.empty(), "no errors when accepted");
      FUZZ_CHECK(updated.event_type == f->current.event_type, "the event type cannot change");
      check_subscription(*f, config, updated);
    } else {
      check_refusal(*f, errors);
    }
  }
  return 0;
}
