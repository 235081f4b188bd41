// Fuzz target: routing::EnvelopeParser (routing/envelope.h), the parser of every event that
// enters fanout (Producer::publish, fanoutd's ingest, the Redis source).
//
// Invariants, beyond "no crash, no sanitizer report":
//   - an accepted envelope obeys envelope.h: org_id >= 1, a catalogue type, an id of 0..128
//     printable ASCII bytes, a payload that is an object copied verbatim from the input;
//   - the delivery body built from it is delivery_body_size() bytes and valid JSON (unless the
//     payload holds numbers simdjson's DOM cannot represent, which envelope.h accepts);
//   - against simdjson's DOM parser as a reference: an input the DOM accepts is never
//     kInvalidJson, an accepted input is one the DOM accepts (same numbers caveat), and both read
//     the same org_id, type and id;
//   - a parser with tighter limits refuses what is too large and otherwise agrees with the
//     default parser on everything it accepts; parsing twice gives the same answer.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "routing/envelope.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using fanout::routing::Envelope;
using fanout::routing::EnvelopeError;
using fanout::routing::EnvelopeOptions;
using fanout::routing::EnvelopeParser;
using fanout::routing::EventCatalogue;

constexpr std::size_t kSmallMaxBytes = 300;
constexpr std::size_t kSmallMaxDepth = 3;

struct Fixture {
  EventCatalogue catalogue;
  EnvelopeParser parser{catalogue};
  EnvelopeParser again{catalogue};
  EnvelopeParser small{catalogue, EnvelopeOptions{kSmallMaxBytes, kSmallMaxDepth}};
  simdjson::dom::parser dom;
};

// simdjson 3.0's DOM refuses integers past 64 bits and numbers past double's range, which are
// valid JSON (envelope.h).
bool number_limit(simdjson::error_code e) {
  return e == simdjson::NUMBER_ERROR;
}

void check_accepted(Fixture& f, std::string_view input, const Envelope& env) {
  FUZZ_CHECK(env.org_id >= 1, "org_id in 1..2^63-1");
  FUZZ_CHECK(env.type < f.catalogue.size(), "type from the catalogue");
  FUZZ_CHECK(env.id.size() <= fanout::routing::kMaxEventIdLength, "id at most 128 bytes");
  for (const char c : env.id) FUZZ_CHECK(c >= 0x21 && c <= 0x7e, "id of printable ASCII");
  FUZZ_CHECK(env.payload.size() >= 2 && env.payload.front() == '{' && env.payload.back() == '}',
             "payload is an object");
  FUZZ_CHECK(input.find(env.payload) != std::string_view::npos, "payload copied verbatim");

  const std::string_view name = f.catalogue.name(env.type);
  const std::string body = fanout::routing::build_delivery_body(name, env.payload);
  FUZZ_CHECK(body.size() == fanout::routing::delivery_body_size(name, env.payload),
             "delivery_body_size() is the body's size");
  simdjson::dom::element root;
  const auto err = f.dom.parse(body).get(root);
  FUZZ_CHECK(!err || number_limit(err), "the delivery body is valid JSON");
  if (err) return;
  std::string_view type;
  simdjson::dom::object payload;
  FUZZ_CHECK(!root["type"].get_string().get(type) && type == name, "the body's type");
  FUZZ_CHECK(!root["payload"].get_object().get(payload), "the body's payload is an object");
}

// The reference: simdjson's DOM on the same bytes.
void check_reference(Fixture& f, std::string_view input,
                     const tl::expected<Envelope, EnvelopeError>& got) {
  simdjson::dom::element root;
  const auto err = f.dom.parse(input.data(), input.size()).get(root);
  if (got) {
    FUZZ_CHECK(!err || number_limit(err), "an accepted envelope is valid JSON");
  } else if (!err) {
    FUZZ_CHECK(got.error() != EnvelopeError::kInvalidJson, "valid JSON is not kInvalidJson");
  }
  if (err || !got) return;
  std::int64_t org = 0;
  std::string_view type, id;
  FUZZ_CHECK(!root["org_id"].get_int64().get(org) && org == got->org_id, "same org_id");
  FUZZ_CHECK(!root["type"].get_string().get(type) && type == f.catalogue.name(got->type),
             "same type");
  if (root["id"].get_string().get(id)) id = {};
  FUZZ_CHECK(id == got->id, "same id");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture* f = new Fixture;  // kept for the process: the parsers' buffers are reused
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // A default string_view (null data) is an input too, e.g. an empty Redis field.
  if (size == 0) FUZZ_CHECK(!f->parser.parse(std::string_view()), "nothing is no envelope");

  const auto got = f->parser.parse(input);
  if (got) check_accepted(*f, input, *got);
  check_reference(*f, input, got);

  const auto again = f->again.parse(input);
  FUZZ_CHECK(again.has_value() == got.has_value(), "parsing twice gives the same answer");
  if (!got) {
    FUZZ_CHECK(again.error() == got.error(), "parsing twice gives the same error");
  } else {
    FUZZ_CHECK(again->org_id == got->org_id && again->type == got->type && again->id == got->id &&
                   again->payload == got->payload,
               "parsing twice gives the same envelope");
  }

  const auto small = f->small.parse(input);
  if (size > kSmallMaxBytes) {
    FUZZ_CHECK(!small && small.error() == EnvelopeError::kTooLarge, "too large comes first");
  } else if (small) {
    FUZZ_CHECK(got && small->org_id == got->org_id && small->type == got->type &&
                   small->id == got->id && small->payload == got->payload,
               "tighter limits accept a subset, read alike");
  } else if (got) {
    FUZZ_CHECK(small.error() == EnvelopeError::kTooDeep, "only depth refuses what fits");
  }
  return 0;
}
