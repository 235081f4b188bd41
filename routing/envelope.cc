#include "routing/envelope.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

#define FANOUT_STR2(x) #x
#define FANOUT_STR(x) FANOUT_STR2(x)

namespace fanout::routing {

namespace {

namespace od = simdjson::ondemand;

// The validating walk recurses once per nesting level; this cap keeps its stack use bounded
// (well under 1 MiB) whatever max_depth an operator configures.
constexpr std::size_t kMaxSupportedDepth = 1024;
// First buffer size, so a stream of small events never reallocates.
constexpr std::size_t kInitialCapacity = 4096;

constexpr std::string_view kOrgIdKey = "org_id";
constexpr std::string_view kTypeKey = "type";
constexpr std::string_view kIdKey = "id";
constexpr std::string_view kPayloadKey = "payload";

constexpr std::string_view kBodyHead = R"({"type":")";
constexpr std::string_view kBodyMiddle = R"(","payload":)";
constexpr std::string_view kBodyTail = "}";

// What a validating walk found.
enum class Walk : std::uint8_t { kOk, kInvalid, kTooDeep };

bool is_json_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

// simdjson's scalar tokens run up to the next structural character, so they carry the
// whitespace that follows them.
std::string_view trim_right(std::string_view s) noexcept {
  while (!s.empty() && is_json_space(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 8259 number grammar. Checked here rather than by simdjson because simdjson 3.0.1 refuses
// integers beyond 64 bits and numbers beyond double's range (1e400): valid JSON, which must pass
// through a payload untouched.
bool is_json_number(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i == n) return false;
  if (s[i] == '0') {
    ++i;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && is_digit(s[i])) ++i;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (i == n || !is_digit(s[i])) return false;
    while (i < n && is_digit(s[i])) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (i == n || !is_digit(s[i])) return false;
    while (i < n && is_digit(s[i])) ++i;
  }
  return i == n;
}

bool is_json_literal(std::string_view s) noexcept {
  return s == "true" || s == "false" || s == "null";
}

// `token` is a valid JSON number; only a plain positive integer that fits int64 is an org id.
std::optional<std::int64_t> parse_org_id(std::string_view token) noexcept {
  if (token.empty() || token.front() == '0') return std::nullopt;
  std::int64_t value = 0;
  for (char c : token) {
    if (!is_digit(c)) return std::nullopt;
    const int digit = c - '0';
    if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// The id travels in an HTTP header, so only visible ASCII is allowed.
bool is_valid_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > kMaxEventIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x21 && c <= 0x7E; });
}

// On-Demand only looks at the values a caller asks for and skips the rest without checking
// them (it balances brackets, nothing more). The walker visits every value so the whole input
// is validated: scalars are checked here, containers and keys through simdjson's iterators.
// Recursion depth is bounded by max_depth, checked before descending.
// Every field, element, object and array is used in place (error(), then value_unsafe()), not
// copied out by get(): GCC 12 compiles get()'s move of a field into a failed store forward, ~15
// cycles on every field (routing/README.md, "Iteration results read in place").
class Walker {
 public:
  // `input` is the whole text being walked: backslashes are looked up in it, once each.
  Walker(std::size_t max_depth, std::string_view input) noexcept
      : max_depth_(max_depth), next_backslash_(input.data()), end_(input.data() + input.size()) {
    find_backslash(input.data());
  }

  // Whether [from, to) holds a backslash. Calls must come in text order (`from` never below an
  // earlier call's `to`), as the walk visits tokens: the cursor then crosses each backslash of
  // the input once, so the whole input costs one memchr per backslash plus one, instead of one
  // per string and key.
  bool has_backslash(const char* from, const char* to) noexcept {
    if (next_backslash_ < from) find_backslash(from);
    return next_backslash_ < to;
  }

  // `depth` is the nesting depth `v` has if it is a container.
  Walk value(od::value& v, std::size_t depth) noexcept {
    const std::string_view token = v.raw_json_token();
    if (token.empty()) return Walk::kInvalid;
    switch (token.front()) {
      case '{': {
        if (depth > max_depth_) return Walk::kTooDeep;
        auto o = v.get_object();
        if (o.error() != simdjson::SUCCESS) return Walk::kInvalid;
        return object(o.value_unsafe(), depth);
      }
      case '[': {
        if (depth > max_depth_) return Walk::kTooDeep;
        auto a = v.get_array();
        if (a.error() != simdjson::SUCCESS) return Walk::kInvalid;
        return array(a.value_unsafe(), depth);
      }
      case '"': {
        // Stage 1 has already checked UTF-8, control characters and the closing quote; only
        // escapes remain, and most strings have none. Unescaping checks them (simdjson refuses
        // unpaired surrogates such as "\ud800", as I-JSON does). Either way the string is
        // consumed: left to skip_child(), a string followed by ':' is taken for a key and the
        // skip runs on past the value's end, hiding a syntax error.
        if (!has_backslash(token.data() + 1, token.data() + token.size())) {
          return v.get_raw_json_string().error() == simdjson::SUCCESS ? Walk::kOk : Walk::kInvalid;
        }
        std::string_view unescaped;
        return v.get_string().get(unescaped) == simdjson::SUCCESS ? Walk::kOk : Walk::kInvalid;
      }
      // Numbers and literals are checked here and left unconsumed: skip_child() steps over a
      // token that does not start with '"' without looking at what follows.
      case 't':
      case 'f':
      case 'n':
        return is_json_literal(trim_right(token)) ? Walk::kOk : Walk::kInvalid;
      default:
        return is_json_number(trim_right(token)) ? Walk::kOk : Walk::kInvalid;
    }
  }

  // `o` has been started; its fields are at `depth` + 1.
  Walk object(od::object& o, std::size_t depth) noexcept {
    for (auto field_result : o) {
      if (field_result.error() != simdjson::SUCCESS) return Walk::kInvalid;
      od::field& field = field_result.value_unsafe();  // in place: see above the class
      // Like a string value, a key needs checking only for its escapes. Between the key's first
      // byte and its value lie only the rest of the key, a quote, a colon and whitespace, so a
      // backslash there is an escape in the key; unescaping it (a copy) is then the check.
      const char* key = field.key().raw();
      const char* value_start = field.value().raw_json_token().data();
      if (has_backslash(key, value_start)) {
        std::string_view unescaped;
        if (field.unescaped_key().get(unescaped) != simdjson::SUCCESS) return Walk::kInvalid;
      }
      const Walk w = value(field.value(), depth + 1);
      if (w != Walk::kOk) return w;
    }
    return Walk::kOk;
  }

  Walk array(od::array& a, std::size_t depth) noexcept {
    for (auto element_result : a) {
      if (element_result.error() != simdjson::SUCCESS) return Walk::kInvalid;
      od::value& element = element_result.value_unsafe();
      const Walk w = value(element, depth + 1);
      if (w != Walk::kOk) return w;
    }
    return Walk::kOk;
  }

 private:
  // Moves the cursor to the first backslash at or after `from`, or to the end of the input.
  void find_backslash(const char* from) noexcept {
    const void* found =
        from < end_ ? std::memchr(from, '\\', static_cast<std::size_t>(end_ - from)) : nullptr;
    next_backslash_ = found != nullptr ? static_cast<const char*>(found) : end_;
  }

  std::size_t max_depth_;
  const char* next_backslash_;  // the first backslash not before the last query, or end_
  const char* end_;
};

// What parse() has learnt about one of the four known fields.
struct FieldState {
  bool seen = false;
  bool ok = false;
  EnvelopeError error = EnvelopeError::kInvalidJson;  // the refusal when !ok
};

EnvelopeError to_error(Walk w) noexcept {
  return w == Walk::kTooDeep ? EnvelopeError::kTooDeep : EnvelopeError::kInvalidJson;
}

// On-Demand reports an exhausted document as OUT_OF_BOUNDS from current_location().
bool at_end(od::document& doc) noexcept {
  const char* location = nullptr;
  return doc.current_location().get(location) == simdjson::OUT_OF_BOUNDS;
}

}  // namespace

std::string_view reason_code(EnvelopeError e) noexcept {
  switch (e) {
    case EnvelopeError::kTooLarge:
      return "too_large";
    case EnvelopeError::kInvalidJson:
      return "invalid_json";
    case EnvelopeError::kTooDeep:
      return "too_deep";
    case EnvelopeError::kNotObject:
      return "not_object";
    case EnvelopeError::kDuplicateField:
      return "duplicate_field";
    case EnvelopeError::kMissingOrgId:
      return "missing_org_id";
    case EnvelopeError::kBadOrgId:
      return "bad_org_id";
    case EnvelopeError::kMissingType:
      return "missing_type";
    case EnvelopeError::kBadType:
      return "bad_type";
    case EnvelopeError::kUnknownType:
      return "unknown_type";
    case EnvelopeError::kBadId:
      return "bad_id";
    case EnvelopeError::kMissingPayload:
      return "missing_payload";
    case EnvelopeError::kBadPayload:
      return "bad_payload";
  }
  return "unknown";
}

std::string_view to_string(EnvelopeError e) noexcept {
  switch (e) {
    case EnvelopeError::kTooLarge:
      return "event is larger than the configured maximum";
    case EnvelopeError::kInvalidJson:
      return "event is not valid JSON";
    case EnvelopeError::kTooDeep:
      return "event nests objects or arrays too deeply";
    case EnvelopeError::kNotObject:
      return "event is not a JSON object";
    case EnvelopeError::kDuplicateField:
      return "org_id, type, id or payload appears twice";
    case EnvelopeError::kMissingOrgId:
      return "org_id is missing";
    case EnvelopeError::kBadOrgId:
      return "org_id is not an integer from 1 to 2^63-1";
    case EnvelopeError::kMissingType:
      return "type is missing";
    case EnvelopeError::kBadType:
      return "type is not a string";
    case EnvelopeError::kUnknownType:
      return "type is not in the event catalogue";
    case EnvelopeError::kBadId:
      return "id is not 1 to 128 printable ASCII characters";
    case EnvelopeError::kMissingPayload:
      return "payload is missing";
    case EnvelopeError::kBadPayload:
      return "payload is not an object";
  }
  return "unknown envelope error";
}

struct EnvelopeParser::Impl {
  Impl(const EventCatalogue& catalogue, EnvelopeOptions options) noexcept
      : catalogue_(catalogue),
        max_event_bytes_(options.max_event_bytes),
        max_depth_(std::min(options.max_depth, kMaxSupportedDepth)) {
    reserve(std::min(kInitialCapacity, max_event_bytes_));
  }

  // What parse() has found so far of the four fields.
  struct Fields {
    Envelope envelope;
    FieldState org_id{.ok = false, .error = EnvelopeError::kMissingOrgId};
    FieldState type{.ok = false, .error = EnvelopeError::kMissingType};
    FieldState id{.ok = true, .error = EnvelopeError::kBadId};
    FieldState payload{.ok = false, .error = EnvelopeError::kMissingPayload};
    bool duplicate = false;
    KeyListener* listener = nullptr;  // told once, when org_id and type are both valid
    void mark_seen(FieldState& state) noexcept {
      duplicate = duplicate || state.seen;
      state.seen = true;
    }
    void tell_key() noexcept {
      if (listener != nullptr && org_id.ok && type.ok) {
        listener->on_key(envelope.org_id, envelope.type);
        listener = nullptr;
      }
    }
  };

  tl::expected<Envelope, EnvelopeError> parse(std::string_view json,
                                              KeyListener* listener) noexcept;
  EnvelopeError not_an_object(od::document& doc, Walker& walker, std::string_view input,
                              std::size_t first) noexcept;
  std::optional<EnvelopeError> read_field(Fields& f, od::field& field, od::document& doc,
                                          Walker& walker) noexcept;
  // Makes room for `size` input bytes plus simdjson's padding, in both buffers.
  void reserve(std::size_t size) noexcept;

  const EventCatalogue& catalogue_;
  std::size_t max_event_bytes_;
  std::size_t max_depth_;
  od::parser json_parser_;
  // The input is copied here: simdjson reads up to SIMDJSON_PADDING bytes past the end, and
  // the returned views must outlive the caller's buffer.
  std::unique_ptr<char[]> buffer_;
  std::size_t buffer_capacity_ = 0;  // usable bytes, padding excluded
};

void EnvelopeParser::Impl::reserve(std::size_t size) noexcept {
  if (size <= buffer_capacity_ && size <= json_parser_.capacity()) return;
  // Grow geometrically up to the size limit, so a slowly growing stream of events reallocates
  // a handful of times, then never.
  const std::size_t grown =
      std::min(std::max(buffer_capacity_ * 2, kInitialCapacity), std::max(max_event_bytes_, size));
  const std::size_t capacity = std::max(size, grown);
  if (capacity > buffer_capacity_) {
    buffer_ = std::make_unique<char[]>(capacity + simdjson::SIMDJSON_PADDING);
    buffer_capacity_ = capacity;
  }
  // On-Demand's own max_depth only sizes debug bookkeeping; the walker enforces the real one.
  if (json_parser_.allocate(capacity, max_depth_ + 1) != simdjson::SUCCESS) {
    std::abort();  // out of memory: crash, as everywhere else (style.md, Errors)
  }
}

// The input is not an object: not an envelope, but a syntax error still takes precedence, so it
// is validated whole first. Cold: a well-formed event never comes here.
EnvelopeError EnvelopeParser::Impl::not_an_object(od::document& doc, Walker& walker,
                                                  std::string_view input,
                                                  std::size_t first) noexcept {
  if (input[first] == '[') {
    if (max_depth_ < 1) return EnvelopeError::kTooDeep;
    od::array a;
    if (doc.get_array().get(a) != simdjson::SUCCESS) return EnvelopeError::kInvalidJson;
    const Walk w = walker.array(a, 1);
    if (w != Walk::kOk) return to_error(w);
  } else if (input[first] == '"') {
    std::string_view s;
    if (doc.get_string().get(s) != simdjson::SUCCESS) return EnvelopeError::kInvalidJson;
  } else {
    const std::string_view token = trim_right(input.substr(first));
    if (!is_json_literal(token) && !is_json_number(token)) return EnvelopeError::kInvalidJson;
    return EnvelopeError::kNotObject;
  }
  if (!at_end(doc)) return EnvelopeError::kInvalidJson;
  return EnvelopeError::kNotObject;
}

// One field of the envelope's object: recorded in `f` (a semantic problem is kept, not
// returned, so the rest of the input is still validated and the error does not depend on key
// order); a syntax or depth error ends the parse.
std::optional<EnvelopeError> EnvelopeParser::Impl::read_field(Fields& f, od::field& field,
                                                              od::document& doc,
                                                              Walker& walker) noexcept {
  std::string_view key;
  if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
    return EnvelopeError::kInvalidJson;
  }
  od::value& v = field.value();
  const std::string_view token = v.raw_json_token();
  if (token.empty()) return EnvelopeError::kInvalidJson;
  const char kind = token.front();

  if (key == kTypeKey || key == kIdKey) {
    const bool is_type = key == kTypeKey;
    FieldState& state = is_type ? f.type : f.id;
    f.mark_seen(state);
    if (kind != '"') {
      const Walk w = walker.value(v, 2);
      if (w != Walk::kOk) return to_error(w);
      state.ok = false;
      state.error = is_type ? EnvelopeError::kBadType : EnvelopeError::kBadId;
      return std::nullopt;
    }
    // Unescaped, so "business\u005fcreated" is business_created; the text lands in the
    // parser's string buffer, which lives until the next parse like the input copy.
    std::string_view text;
    if (v.get_string().get(text) != simdjson::SUCCESS) {
      return EnvelopeError::kInvalidJson;
    }
    if (is_type) {
      const std::optional<EventTypeId> found = catalogue_.find(text);
      f.type.ok = found.has_value();
      f.type.error = EnvelopeError::kUnknownType;
      if (found) f.envelope.type = *found;
      f.tell_key();
    } else {
      f.id.ok = is_valid_id(text);
      f.envelope.id = text;
    }
  } else if (key == kOrgIdKey) {
    f.mark_seen(f.org_id);
    const Walk w = walker.value(v, 2);
    if (w != Walk::kOk) return to_error(w);
    // Any valid token other than a plain integer (string, fraction, exponent) is refused.
    const std::optional<std::int64_t> value = parse_org_id(trim_right(token));
    f.org_id.ok = value.has_value();
    f.org_id.error = EnvelopeError::kBadOrgId;
    if (value) f.envelope.org_id = *value;
    f.tell_key();
  } else if (key == kPayloadKey) {
    f.mark_seen(f.payload);
    const Walk w = walker.value(v, 2);
    if (w != Walk::kOk) return to_error(w);
    f.payload.ok = kind == '{';
    f.payload.error = EnvelopeError::kBadPayload;
    if (!f.payload.ok) return std::nullopt;
    // The payload span is taken in the same pass that validates it: it starts at the '{'
    // token, and once the walk has consumed the object the iterator rests on the next
    // structural character (',' or '}'), so the closing '}' is the last non-space byte
    // before it. A second On-Demand pass over raw_json() would run stage 1 twice.
    const char* next = nullptr;
    if (doc.current_location().get(next) != simdjson::SUCCESS) {
      return EnvelopeError::kInvalidJson;
    }
    const char* end = next;
    while (end > token.data() && is_json_space(end[-1])) --end;
    if (end == token.data() || end[-1] != '}') return EnvelopeError::kInvalidJson;
    f.envelope.payload =
        std::string_view(token.data(), static_cast<std::size_t>(end - token.data()));
  } else {
    const Walk w = walker.value(v, 2);
    if (w != Walk::kOk) return to_error(w);
  }
  return std::nullopt;
}

tl::expected<Envelope, EnvelopeError> EnvelopeParser::Impl::parse(std::string_view json,
                                                                  KeyListener* listener) noexcept {
  using tl::unexpected;
  if (json.size() > max_event_bytes_) return unexpected(EnvelopeError::kTooLarge);
  if (json.empty()) return unexpected(EnvelopeError::kInvalidJson);
  reserve(json.size());
  std::memcpy(buffer_.get(), json.data(), json.size());
  // Zeroed padding: a stale '}' there would send simdjson on a needless balance scan.
  std::memset(buffer_.get() + json.size(), 0, simdjson::SIMDJSON_PADDING);

  od::document doc;
  if (json_parser_
          .iterate(buffer_.get(), json.size(), buffer_capacity_ + simdjson::SIMDJSON_PADDING)
          .get(doc) != simdjson::SUCCESS) {
    // Stage 1 failures: empty input, invalid UTF-8, unclosed string, raw control characters.
    return unexpected(EnvelopeError::kInvalidJson);
  }

  const std::string_view input(buffer_.get(), json.size());
  const std::size_t first = input.find_first_not_of(" \t\n\r");
  if (first == std::string_view::npos) return unexpected(EnvelopeError::kInvalidJson);
  Walker walker(max_depth_, input);

  if (input[first] != '{') return unexpected(not_an_object(doc, walker, input, first));

  if (max_depth_ < 1) return unexpected(EnvelopeError::kTooDeep);
  od::object root;
  if (doc.get_object().get(root) != simdjson::SUCCESS) {
    return unexpected(EnvelopeError::kInvalidJson);
  }

  Fields f;
  f.listener = listener;
  for (auto field_result : root) {
    if (field_result.error() != simdjson::SUCCESS) return unexpected(EnvelopeError::kInvalidJson);
    od::field& field = field_result.value_unsafe();
    if (const auto e = read_field(f, field, doc, walker); e) return unexpected(*e);
  }
  if (!at_end(doc)) return unexpected(EnvelopeError::kInvalidJson);

  if (f.duplicate) return unexpected(EnvelopeError::kDuplicateField);
  for (const FieldState* state : {&f.org_id, &f.type, &f.id, &f.payload}) {
    if (!state->ok) return unexpected(state->error);
  }
  return f.envelope;
}

EnvelopeParser::EnvelopeParser(const EventCatalogue& catalogue, EnvelopeOptions options)
    : impl_(std::make_unique<Impl>(catalogue, options)) {}

EnvelopeParser::~EnvelopeParser() = default;

tl::expected<Envelope, EnvelopeError> EnvelopeParser::parse(std::string_view json,
                                                            KeyListener* listener) noexcept {
  return impl_->parse(json, listener);
}

std::size_t delivery_body_size(std::string_view type_name, std::string_view payload) noexcept {
  return kBodyHead.size() + type_name.size() + kBodyMiddle.size() + payload.size() +
         kBodyTail.size();
}

std::size_t write_delivery_body(std::string_view type_name, std::string_view payload,
                                char* out) noexcept {
  char* p = out;
  for (std::string_view part : {kBodyHead, type_name, kBodyMiddle, payload, kBodyTail}) {
    if (part.empty()) continue;  // memcpy from a null data() is undefined even for 0 bytes
    std::memcpy(p, part.data(), part.size());
    p += part.size();
  }
  return static_cast<std::size_t>(p - out);
}

std::string build_delivery_body(std::string_view type_name, std::string_view payload) {
  std::string body(delivery_body_size(type_name, payload), '\0');
  write_delivery_body(type_name, payload, body.data());
  return body;
}

std::string_view json_library_version() noexcept {
  return FANOUT_STR(SIMDJSON_VERSION);
}

}  // namespace fanout::routing
