// The event envelope (docs/webhook-contract.md §3): parsing what enters fanout, and building what
// leaves it.
//
// In:  {"id": "optional", "org_id": 42, "type": "business_updated", "payload": {...}}
// Out: {"type":"business_updated","payload":{...}}   (payload bytes copied verbatim)
//
// Parsing uses simdjson On-Demand and validates the whole input (payload included) as JSON, so
// a body built from an accepted envelope is always valid JSON. Refusals carry a reason code.
//
// What counts as valid JSON: RFC 8259, UTF-8 checked everywhere (overlong forms, surrogates
// encoded in UTF-8 and bytes above U+10FFFF refused), nothing but whitespace after the value.
// Integers of any size are valid (a payload may carry 123456789012345678901234567890; only
// org_id must fit int64). Escapes of unpaired surrogates ("\ud800") are refused, as I-JSON
// (RFC 7493) and simdjson do, since many receivers' parsers reject them.
//
// When an input has several problems, the error reported does not depend on key order:
// kTooLarge first; then kInvalidJson for byte-level faults anywhere (bad UTF-8, raw control
// characters, an unclosed string); then kInvalidJson or kTooDeep, whichever comes first in the
// text; then kNotObject; then the first in enum order among kDuplicateField .. kBadPayload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "routing/catalogue.h"

namespace fanout::routing {

inline constexpr std::size_t kDefaultMaxEventBytes = 256 * 1024;
inline constexpr std::size_t kDefaultMaxDepth = 64;
inline constexpr std::size_t kMaxEventIdLength = 128;

// Why an event was refused. Keys are compared after unescaping ("org\u005fid" is org_id); only
// the four known keys must be unique, other top-level keys may repeat, and keys inside the
// payload are never checked. An id is measured after unescaping too.
enum class EnvelopeError : std::uint8_t {
  kTooLarge,        // input longer than max_event_bytes
  kInvalidJson,     // not valid JSON (syntax, truncation, invalid UTF-8, trailing bytes)
  kTooDeep,         // nesting deeper than max_depth
  kNotObject,       // top level is not an object
  kDuplicateField,  // org_id, type, id or payload given twice
  kMissingOrgId,    // no org_id key
  kBadOrgId,        // not an integer in 1..2^63-1
  kMissingType,     // no type key
  kBadType,         // not a string
  kUnknownType,     // not in the catalogue
  kBadId,           // not a string of 1..128 printable ASCII characters (0x21..0x7E)
  kMissingPayload,  // no payload key
  kBadPayload,      // not an object
};

// Stable machine-readable code, e.g. "unknown_type".
[[nodiscard]] std::string_view reason_code(EnvelopeError e) noexcept;
// A short English phrase, e.g. "type is not in the event catalogue".
[[nodiscard]] std::string_view to_string(EnvelopeError e) noexcept;

// An accepted envelope. The views point into the parser that produced it and stay valid until
// that parser's next parse() call or its destruction.
struct Envelope {
  std::int64_t org_id = 0;
  EventTypeId type = 0;
  // Empty when the event has no id. Unescaped ("a\u0041" gives "aA"); every accepted byte is
  // 0x21..0x7E, so it can go into an HTTP header as is.
  std::string_view id;
  // The payload object's exact bytes, '{' to its matching '}', without the whitespace around it;
  // escapes, spacing and duplicate keys inside are kept as sent.
  std::string_view payload;
};

struct EnvelopeOptions {
  std::size_t max_event_bytes = kDefaultMaxEventBytes;
  // Deepest nesting of objects and arrays, the top-level object counting 1 and the payload
  // object 2. Values above 1024 act as 1024, which bounds the validator's recursion.
  std::size_t max_depth = kDefaultMaxDepth;
};

// Told the routing key during EnvelopeParser::parse(), as soon as org_id and type have both been
// read and are valid, before the rest of the input (usually the payload, the bulk of it) is
// walked: a caller starts loading what it will look up with that key (Producer prefetches the
// routing entry and the organisation's budget), and the cache misses overlap the walk. Called at
// most once per parse(), also for an input refused afterwards (a field found later that is
// invalid or given twice): a hint, never a decision.
class KeyListener {
 public:
  virtual void on_key(std::int64_t org_id, EventTypeId type) noexcept = 0;

 protected:
  KeyListener() = default;
  KeyListener(const KeyListener&) = default;
  KeyListener& operator=(const KeyListener&) = default;
  ~KeyListener() = default;
};

// Parses envelopes. Keeps its simdjson parser and a padded input buffer between calls, so after
// warm-up parse() allocates nothing (the buffers grow geometrically up to max_event_bytes and
// never shrink). parse() copies the input, so the caller's buffer may be freed as soon as it
// returns. Not thread-safe: use one per thread. `catalogue` must outlive the parser.
class EnvelopeParser {
 public:
  explicit EnvelopeParser(const EventCatalogue& catalogue, EnvelopeOptions options = {});
  ~EnvelopeParser();
  EnvelopeParser(const EnvelopeParser&) = delete;
  EnvelopeParser& operator=(const EnvelopeParser&) = delete;

  [[nodiscard]] tl::expected<Envelope, EnvelopeError> parse(
      std::string_view json, KeyListener* listener = nullptr) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Size in bytes of the delivery body for this type name and payload.
[[nodiscard]] std::size_t delivery_body_size(std::string_view type_name,
                                             std::string_view payload) noexcept;
// Writes {"type":"<type_name>","payload":<payload>} to `out`, which must hold
// delivery_body_size() bytes; returns the bytes written. `type_name` comes from the catalogue
// (no escaping needed); `payload` is copied byte for byte.
std::size_t write_delivery_body(std::string_view type_name, std::string_view payload,
                                char* out) noexcept;
// The simdjson version the parser was built with, e.g. "3.0.1".
[[nodiscard]] std::string_view json_library_version() noexcept;

// Convenience form returning a new string.
[[nodiscard]] std::string build_delivery_body(std::string_view type_name, std::string_view payload);

}  // namespace fanout::routing
