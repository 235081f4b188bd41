// Helpers shared by the files of fanoutd's HTTP routes (api.cc, api_ingest.cc,
// api_history.cc): parsing the query and numbers, and Partoo-shaped answers. Defined in api.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
// {"page","max_page","count","items":[ + the caller's items + ]} ; call finish_page after.
void begin_page(std::string& body, std::int64_t page, std::int64_t per_page, std::int64_t count);
// The offset of `page` (pages past the end are empty: the offset saturates).
[[nodiscard]] std::int64_t page_offset(std::int64_t page, std::int64_t per_page);

}  // namespace fanout::daemon::api_detail
