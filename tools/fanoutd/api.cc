// fanoutd's HTTP routes: the dispatch, authentication and the checks every route shares. The
// routes themselves: api_webhooks.cc, api_tryout.cc, api_ingest.cc, api_history.cc,
// api_signing.cc, api_web.cc, api_early.cc. See api.h for the order of checks and README.md for
// every answer.
#include "tools/fanoutd/api.h"

#include <uv.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <limits>
#include <random>

#include "engine/standard_webhooks.h"
#include "fanout/version.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/api_signing.h"
#include "tools/fanoutd/log.h"

namespace fanout::daemon {

using transport::HttpRequest;
using transport::HttpResponder;

namespace api_detail {

// --- small parsers ------------------------------------------------------------------------------

// A positive decimal int64 without sign, spaces or leading '+'; nullopt otherwise.
std::optional<std::int64_t> parse_positive(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of one query component ('+' is a space).
std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Api::Query parse_query(std::string_view q) {
  Api::Query out;
  while (!q.empty()) {
    const std::size_t amp = q.find('&');
    const std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    out.emplace_back(url_decode(part.substr(0, eq)), eq == std::string_view::npos
                                                         ? std::string()
                                                         : url_decode(part.substr(eq + 1)));
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]);
    const auto y = static_cast<unsigned char>(b[i]);
    if (std::tolower(x) != std::tolower(y)) return false;
  }
  return true;
}

// The media type of a Content-Type value, without parameters or surrounding spaces.
std::string_view media_type(std::string_view v) {
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// --- answers ------------------------------------------------------------------------------------

void set_error(Api::Reply& r, int status, std::string_view kind, std::string_view message) {
  r.status = status;
  r.body = "{\"error\":{";
  json::append_key(r.body, kind);
  json::append_string(r.body, message);
  r.body += "}}";
}

void not_found(Api::Reply& r) {
  r.status = 404;
  r.body = R"({"error":{"json":"Resource not found"}})";
}

void add_error(Api::FieldErrors& errors, std::string field, std::string message) {
  for (auto& [f, m] : errors) {
    if (f == field) {
      m += ' ';
      m += message;
      return;
    }
  }
  errors.emplace_back(std::move(field), std::move(message));
}

void set_field_errors(Api::Reply& r, const Api::FieldErrors& errors) {
  r.status = 400;
  r.body = R"({"error":{"json":{)";
  bool first = true;
  for (const auto& [field, message] : errors) {
    if (!first) r.body.push_back(',');
    first = false;
    json::append_key(r.body, field);
    json::append_string(r.body, message);
  }
  r.body += "}}}";
}

void field_error(Api::Reply& r, std::string field, std::string message) {
  Api::FieldErrors e;
  e.emplace_back(std::move(field), std::move(message));
  set_field_errors(r, e);
}

std::string_view method_label(std::string_view m) {
  static constexpr std::array<std::string_view, 7> kKnown = {"GET",    "POST",    "PUT", "PATCH",
                                                             "DELETE", "OPTIONS", "HEAD"};
  for (std::string_view k : kKnown) {
    if (m == k) return k;
  }
  return "other";
}

bool parse_paging(const Api::Query& q, std::int64_t& page, std::int64_t& per_page,
                  Api::Reply& reply) {
  Api::FieldErrors errors;
  for (const auto& [name, value] : q) {
    if (name == "page") {
      const auto v = parse_positive(value);
      if (!v) {
        add_error(errors, "page", "page must be an integer >= 1.");
      } else {
        page = *v;
      }
    } else if (name == "per_page") {
      const auto v = parse_positive(value);
      if (!v || *v > kMaxPerPage) {
        add_error(errors, "per_page", "per_page must be an integer from 1 to 100.");
      } else {
        per_page = *v;
      }
    }
  }
  if (errors.empty()) return true;
  set_field_errors(reply, errors);
  return false;
}

std::int64_t page_offset(std::int64_t page, std::int64_t per_page) {
  // page * per_page cannot overflow in a way that matters: pages past the end are empty.
  return page > std::numeric_limits<std::int64_t>::max() / per_page
             ? std::numeric_limits<std::int64_t>::max()
             : (page - 1) * per_page;
}

void begin_page(std::string& body, std::int64_t page, std::int64_t per_page, std::int64_t count) {
  const std::int64_t max_page = std::max<std::int64_t>(1, (count + per_page - 1) / per_page);
  body = "{\"page\":";
  json::append_int(body, page);
  body += ",\"max_page\":";
  json::append_int(body, max_page);
  body += ",\"count\":";
  json::append_int(body, count);
  body += ",\"items\":[";
}

}  // namespace api_detail

using namespace api_detail;

// --- Api ----------------------------------------------------------------------------------------

Api::Api(ApiDeps deps)
    : deps_(deps),
      producer_(deps.engine->make_producer()),
      limiter_(deps.config->api_rate_limit_per_minute),
      tryout_limiter_(deps.config->api_tryout_rate_limit_per_minute),
      auth_failures_(deps.config->api_failed_auth_per_minute),
      subscriptions_(deps.subscriptions) {}

Api::~Api() = default;

void Api::answer_later(HttpResponder responder, const Reply& reply, std::string_view method,
                       std::string_view route) {
  deps_.metrics->record_request(method, route, reply.status);
  send(responder, reply);
}

void Api::send(HttpResponder responder, const Reply& reply) {
  std::vector<transport::HttpHeaderView> headers;
  headers.reserve(reply.headers.size() + 1);
  if (reply.status != 204) headers.push_back({"content-type", reply.content_type});
  for (const auto& [n, v] : reply.headers) headers.push_back({n, v});
  responder.respond(reply.status, headers, reply.status == 204 ? std::string_view() : reply.body);
}

void Api::on_request(const HttpRequest& req, HttpResponder responder) {
  std::string_view route = "other";
  Reply reply;
  if (!dispatch(req, responder, route, reply)) return;  // tryout: answered later
  deps_.metrics->record_request(method_label(req.method), route, reply.status);
  if (reply.status >= 500) {
    log::warn("api answer", {{"method", std::string(method_label(req.method))},
                             {"route", std::string(route)},
                             {"status", std::to_string(reply.status)}});
  } else if (log::enabled(LogLevel::kDebug)) {
    log::debug("api answer", {{"method", std::string(method_label(req.method))},
                              {"route", std::string(route)},
                              {"status", std::to_string(reply.status)}});
  }
  send(responder, reply);
}

namespace {

// 405 with `allow`; true (answered), for the dispatch to return.
bool method_not_allowed(Api::Reply& reply, std::string_view allow) {
  reply.status = 405;
  reply.body = R"({"error":{"json":"Method not allowed"}})";
  reply.headers.emplace_back("allow", std::string(allow));
  return true;
}

}  // namespace

// Which of the /v2/webhooks routes, and its path parameters.
struct Api::WebhookRoute {
  enum class Kind {
    kCollection,
    kEvents,
    kTryout,
    kItem,
    kDeliveries,
    kResend,
    kRecover,
    kRotate
  } kind = Kind::kCollection;
  std::int64_t id = 0;
  std::string event_id;  // kResend
};

bool Api::dispatch(const HttpRequest& req, HttpResponder responder, std::string_view& route,
                   Reply& reply) {
  const std::size_t qpos = req.target.find('?');
  const std::string_view path = req.target.substr(0, qpos);
  const Query query =
      qpos == std::string_view::npos ? Query() : parse_query(req.target.substr(qpos + 1));
  const std::string_view m = req.method;

  if (path == "/healthz") {
    route = "/healthz";
    if (m != "GET") return method_not_allowed(reply, "GET");
    reply.status = stopping_ ? 503 : 200;
    reply.body = stopping_ ? R"({"status":"stopping"})" : R"({"status":"ok"})";
    return true;
  }
  if (path == "/metrics") {
    route = "/metrics";
    if (m != "GET") return method_not_allowed(reply, "GET");
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply.body = deps_.metrics->render(deps_.engine->stats(), subscriptions_);
    return true;
  }
  if (web(path, m, route, reply)) return true;
  if (path == "/v2/me") {
    route = "/v2/me";
    if (m != "GET") return method_not_allowed(reply, "GET");
    me(req, reply);
    return true;
  }
  if (path == "/v2/events") {
    route = "/v2/events";
    if (m != "POST") return method_not_allowed(reply, "POST");
    ApiKey key;
    if (!authenticate(req, /*ingest=*/true, key, reply)) return true;
    for (const auto& [name, value] : query) {
      (void)value;
      field_error(reply, name, "Unknown field.");
      return true;
    }
    if (!check_body(req, deps_.config->ingest_max_body_bytes, /*ndjson_ok=*/true, reply)) {
      return true;
    }
    return ingest(req, key, responder, reply);
  }

  constexpr std::string_view kBase = "/v2/webhooks";
  if (path.substr(0, kBase.size()) != kBase) {
    not_found(reply);
    return true;
  }
  WebhookRoute w;
  if (!match_webhook(path.substr(kBase.size()), m, w, route, reply)) return true;
  return dispatch_webhook(req, responder, query, w, reply);
}

bool Api::match_webhook(std::string_view rest, std::string_view m, WebhookRoute& w,
                        std::string_view& route, Reply& reply) {
  using Kind = WebhookRoute::Kind;
  if (rest.empty()) {
    w.kind = Kind::kCollection;
    route = "/v2/webhooks";
    if (m != "GET" && m != "POST") return !method_not_allowed(reply, "GET, POST");
    return true;
  }
  if (rest == "/events") {
    w.kind = Kind::kEvents;
    route = "/v2/webhooks/events";
    return m == "GET" || !method_not_allowed(reply, "GET");
  }
  if (rest == "/tryout") {
    w.kind = Kind::kTryout;
    route = "/v2/webhooks/tryout";
    return m == "POST" || !method_not_allowed(reply, "POST");
  }
  if (rest.front() != '/') {
    not_found(reply);
    return false;
  }
  // /{id}, /{id}/deliveries, /{id}/deliveries/{event_id}/resend, /{id}/recover
  const std::size_t slash = rest.find('/', 1);
  const auto parsed = parse_positive(
      rest.substr(1, slash == std::string_view::npos ? std::string_view::npos : slash - 1));
  const std::string_view sub =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  constexpr std::string_view kDeliveries = "/deliveries", kResend = "/resend";
  if (sub.empty()) {
    w.kind = Kind::kItem;
    route = "/v2/webhooks/{id}";
    if (m != "GET" && m != "PUT" && m != "PATCH" && m != "DELETE") {
      return !method_not_allowed(reply, "GET, PUT, PATCH, DELETE");
    }
  } else if (sub == kDeliveries) {
    w.kind = Kind::kDeliveries;
    route = "/v2/webhooks/{id}/deliveries";
    if (m != "GET") return !method_not_allowed(reply, "GET");
  } else if (sub == "/secret/rotate") {
    w.kind = Kind::kRotate;
    route = "/v2/webhooks/{id}/secret/rotate";
    if (m != "POST") return !method_not_allowed(reply, "POST");
  } else if (sub == "/recover") {
    w.kind = Kind::kRecover;
    route = "/v2/webhooks/{id}/recover";
    if (m != "POST") return !method_not_allowed(reply, "POST");
  } else if (sub.size() > kDeliveries.size() + 1 + kResend.size() &&
             sub.substr(0, kDeliveries.size() + 1) == "/deliveries/" &&
             sub.substr(sub.size() - kResend.size()) == kResend) {
    w.kind = Kind::kResend;
    route = "/v2/webhooks/{id}/deliveries/{event_id}/resend";
    if (m != "POST") return !method_not_allowed(reply, "POST");
    w.event_id = url_decode(
        sub.substr(kDeliveries.size() + 1, sub.size() - kDeliveries.size() - 1 - kResend.size()));
  } else {
    not_found(reply);
    return false;
  }
  if (!parsed) {
    not_found(reply);
    return false;
  }
  w.id = *parsed;
  return true;
}

bool Api::check_webhook_query(const WebhookRoute& w, std::string_view m, const Query& query,
                              Reply& reply) {
  using Kind = WebhookRoute::Kind;
  // Query parameters: list takes page and per_page; every route takes org_id.
  for (const auto& param : query) {
    // Not a structured binding: clang before 16 cannot capture one in the lambda below.
    const std::string& name = param.first;
    const bool paging =
        ((w.kind == Kind::kCollection && m == "GET") || w.kind == Kind::kDeliveries) &&
        (name == "page" || name == "per_page");
    const bool own = (w.kind == Kind::kDeliveries && name == "outcome") ||
                     (w.kind == Kind::kRecover && name == "since");
    if (name != "org_id" && !paging && !own) {
      field_error(reply, name, "Unknown field.");
      return false;
    }
    if (std::count_if(query.begin(), query.end(), [&](const auto& p) { return p.first == name; }) >
        1) {
      field_error(reply, name, "given more than once.");
      return false;
    }
  }
  return true;
}

bool Api::dispatch_webhook(const HttpRequest& req, HttpResponder responder, const Query& query,
                           const WebhookRoute& w, Reply& reply) {
  using Kind = WebhookRoute::Kind;
  const std::string_view m = req.method;
  ApiKey key;
  if (!authenticate(req, /*ingest=*/false, key, reply)) return true;
  if (!check_webhook_query(w, m, query, reply)) return true;
  Caller caller;
  caller.key = std::move(key);
  if (!resolve_org(caller.key, query, w.kind != Kind::kEvents, caller, reply)) return true;
  {
    const std::int64_t bucket = caller.org != 0 ? caller.org : caller.key.orgs.front();
    const std::uint32_t wait = limiter_.take(bucket, uv_hrtime() / 1'000'000);
    if (wait != 0) {
      set_error(reply, 429, "rate_limit",
                std::to_string(deps_.config->api_rate_limit_per_minute) +
                    " requests per minute per organisation; retry after " + std::to_string(wait) +
                    " s");
      reply.headers.emplace_back("retry-after", std::to_string(wait));
      return true;
    }
  }
  const bool has_body = (m == "POST" || m == "PUT" || m == "PATCH") && w.kind != Kind::kResend &&
                        w.kind != Kind::kRecover && w.kind != Kind::kRotate;
  if (has_body && !check_body(req, deps_.config->api_max_body_bytes, false, reply)) return true;

  switch (w.kind) {
    case Kind::kCollection:
      if (m == "GET") {
        list(caller, query, reply);
      } else {
        create(caller, req.body, reply);
      }
      return true;
    case Kind::kEvents:
      events(reply);
      return true;
    case Kind::kTryout:
      return tryout(caller, req.body, responder, reply);
    case Kind::kDeliveries:
      history(caller, w.id, query, reply);
      return true;
    case Kind::kResend:
      return !resend(caller, w.id, w.event_id, responder, reply);
    case Kind::kRecover:
      return !recover(caller, w.id, query, responder, reply);
    case Kind::kRotate:
      rotate_secret(caller, w.id, reply);
      return true;
    case Kind::kItem:
      if (m == "GET") {
        get_one(caller, w.id, reply);
      } else if (m == "DELETE") {
        remove(caller, w.id, reply);
      } else {
        update(caller, w.id, req.body, reply);
      }
      return true;
  }
  return true;
}

bool Api::lookup_key(const HttpRequest& req, ApiKey& key, Reply& reply) {
  const std::string_view presented = req.header("x-apikey");
  if (presented.empty()) {
    set_error(reply, 401, "authentication", "missing x-APIKey header");
    return false;
  }
  // Failed authentications are limited per client address, checked before any lookup.
  const std::uint64_t now_ms = uv_hrtime() / 1'000'000;
  const auto peer = static_cast<std::int64_t>(std::hash<std::string_view>{}(req.peer_ip));
  if (const std::uint32_t wait = auth_failures_.peek(peer, now_ms); wait != 0) {
    set_error(reply, 429, "rate_limit",
              "too many failed authentications from this address; retry after " +
                  std::to_string(wait) + " s");
    reply.headers.emplace_back("retry-after", std::to_string(wait));
    return false;
  }
  const std::optional<ApiKey>* cached = key_cache_.find(presented, now_ms);
  if (cached == nullptr) {
    auto found = deps_.store->find_api_key(presented);
    if (!found) {
      db_error("api key lookup", found.error(), reply);
      return false;
    }
    key_cache_.put(presented, std::move(*found), now_ms);
    cached = key_cache_.find(presented, now_ms);
  }
  if (cached == nullptr || !cached->has_value()) {
    (void)auth_failures_.take(peer, now_ms);
    set_error(reply, 401, "authentication", "invalid or revoked API key");
    return false;
  }
  key = **cached;
  return true;
}

bool Api::authenticate(const HttpRequest& req, bool ingest_route, ApiKey& key, Reply& reply) {
  if (!lookup_key(req, key, reply)) return false;
  if (probing_) {
    probe_passed_ = true;  // on_headers(): the key is good; the rest waits for the body
    return false;
  }
  const bool is_ingest = key.role == Role::kIngest;
  if (ingest_route && !is_ingest) {
    set_error(reply, 403, "authorization", "this route needs an INGEST key");
    return false;
  }
  if (!ingest_route && is_ingest) {
    set_error(reply, 403, "authorization", "an INGEST key may only publish events");
    return false;
  }
  return true;
}

bool Api::resolve_org(const ApiKey& key, const Query& query, bool org_required, Caller& caller,
                      Reply& reply) {
  std::optional<std::int64_t> org;
  for (const auto& [name, value] : query) {
    if (name != "org_id") continue;
    org = parse_positive(value);
    if (!org) {
      field_error(reply, "org_id", "org_id must be a positive integer.");
      return false;
    }
  }
  if (key.role == Role::kOrgAdmin) {
    if (org && *org != key.orgs.front()) {
      set_error(reply, 403, "authorization",
                "this key may not act for organisation " + std::to_string(*org));
      return false;
    }
    caller.org = key.orgs.front();
    return true;
  }
  // PROVIDER
  if (!org) {
    if (!org_required) return true;
    field_error(reply, "org_id",
                "Missing data for required field. A PROVIDER key must name the "
                "organisation with ?org_id=.");
    return false;
  }
  if (!std::binary_search(key.orgs.begin(), key.orgs.end(), *org)) {
    set_error(reply, 403, "authorization",
              "this key may not act for organisation " + std::to_string(*org));
    return false;
  }
  caller.org = *org;
  return true;
}

bool Api::check_body(const HttpRequest& req, std::size_t max_bytes, bool ndjson_ok, Reply& reply) {
  if (req.body.size() > max_bytes) {
    set_error(reply, 413, "json", "body larger than " + std::to_string(max_bytes) + " bytes");
    return false;
  }
  const std::string_view type = media_type(req.header("content-type"));
  if (iequals(type, "application/json") || (ndjson_ok && iequals(type, "application/x-ndjson"))) {
    return true;
  }
  reply.status = 415;
  reply.body =
      ndjson_ok
          ? R"({"error":{"json":"Content-Type must be application/json or application/x-ndjson"}})"
          : R"({"error":{"json":"Content-Type must be application/json"}})";
  return false;
}

void Api::db_error(std::string_view what, const std::string& message, Reply& reply) {
  log::error("store error", {{"during", std::string(what)}, {"error", message}});
  set_error(reply, 500, "internal", "the store failed; see the daemon's log");
}

}  // namespace fanout::daemon
