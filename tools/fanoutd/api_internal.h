// Helpers shared by the files of fanoutd's HTTP routes (api.cc, api_webhooks.cc, api_ingest.cc,
// api_history.cc, ...): parsing the query and numbers, and Partoo-shaped answers. Defined in
// api.cc, the webhook bodies in api_webhooks.cc, ingest_reply in api_ingest.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/fanoutd/api.h"

namespace fanout::daemon::api_detail {

inline constexpr std::size_t kMaxLatest = 100'000;  // payloads remembered for tryout
inline constexpr std::int64_t kMaxPerPage = 100;
inline constexpr std::int64_t kDefaultPerPage = 30;

// A positive decimal int64 without sign, spaces or leading '+'; nullopt otherwise.
[[nodiscard]] std::optional<std::int64_t> parse_positive(std::string_view s);
[[nodiscard]] Api::Query parse_query(std::string_view q);
// %XX decoded, "+" as a space (query style; used for path segments too).
[[nodiscard]] std::string url_decode(std::string_view s);
[[nodiscard]] bool iequals(std::string_view a, std::string_view b);
// The media type of a Content-Type value, without parameters.
[[nodiscard]] std::string_view media_type(std::string_view v);
[[nodiscard]] std::string_view method_label(std::string_view m);

// {"error":{"<kind>":"<message>"}} with `status`.
void set_error(Api::Reply& r, int status, std::string_view kind, std::string_view message);
void not_found(Api::Reply& r);
void add_error(Api::FieldErrors& errors, std::string field, std::string message);
// 400 {"error":{"json":{"<field>":"<message>",...}}}
void set_field_errors(Api::Reply& r, const Api::FieldErrors& errors);
void field_error(Api::Reply& r, std::string field, std::string message);
// page and per_page (1..100, default 30) from the query: false with a 400 in `reply`.
[[nodiscard]] bool parse_paging(const Api::Query& q, std::int64_t& page, std::int64_t& per_page,
                                Api::Reply& reply);
// Webhook bodies (docs/webhook-contract.md §2) without the store or the engine, so that they can be
// tested and fuzzed alone (tests/fuzz/api_fuzz.cc); `parser` is reused between calls. POST
// /v2/webhooks and tryout: {"items":[...]} into 1 to 100 validated subscriptions of `org` whose
// ports config.allowed_ports allows; false with `errors` (then `out` means nothing).
[[nodiscard]] bool parse_items(simdjson::dom::parser& parser, std::string_view body,
                               std::int64_t org, const routing::EventCatalogue& catalogue,
                               const Config& config, std::vector<routing::Subscription>& out,
                               Api::FieldErrors& errors);
// PUT or PATCH /v2/webhooks/{id}: `cur` with the body's changes, validated into `out` (id and
// timestamps not set); false with `errors`.
[[nodiscard]] bool parse_update(simdjson::dom::parser& parser, std::string_view body,
                                const routing::Subscription& cur,
                                const routing::EventCatalogue& catalogue, const Config& config,
                                routing::Subscription& out, Api::FieldErrors& errors);
// allowed_ports: false (with a field error on `field`) when the URL's port is not allowed.
[[nodiscard]] bool check_port(const Config& config, const routing::Subscription& s,
                              const std::string& field, Api::FieldErrors& errors);

// POST /v2/events without the engine (tests/fuzz/api_ingest_fuzz.cc). The events of `body`
// (`ndjson`: one per non-blank line, numbered from 1 with blank lines counted; otherwise the
// whole body, unless blank) go to `publish` in order, none after one answered busy or stopped
// (nor any when `stopping`: all busy). The answer goes into `reply`: 400 when there is no event
// or more than `max_events`; else 202, or 503 with Retry-After `retry_after_s` when an event was
// busy, {"accepted","dropped","refused","busy","duplicate","items":[{"line","status",...}]}.
// [first_seq, last_seq]: the journal sequences of the answer's events (0, 0: none).
using IngestPublish = std::function<PublishResult(std::string_view event)>;
void ingest_reply(std::string_view body, bool ndjson, std::size_t max_events,
                  std::uint32_t retry_after_s, bool stopping, const IngestPublish& publish,
                  Api::Reply& reply, std::uint64_t& first_seq, std::uint64_t& last_seq);

// {"page","max_page","count","items":[ + the caller's items + ]} ; call finish_page after.
void begin_page(std::string& body, std::int64_t page, std::int64_t per_page, std::int64_t count);
// The offset of `page` (pages past the end are empty: the offset saturates).
[[nodiscard]] std::int64_t page_offset(std::int64_t page, std::int64_t per_page);

}  // namespace fanout::daemon::api_detail
