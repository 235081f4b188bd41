// fanoutd's HTTP routes. See api.h for the order of checks and README.md for every answer.
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

constexpr std::size_t kMaxItems = 100;

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

std::string violation_message(const routing::Violation& v) {
  return v.message + " [" + std::string(routing::rule_name(v.rule)) + "]";
}

std::string_view method_label(std::string_view m) {
  static constexpr std::array<std::string_view, 7> kKnown = {"GET",    "POST",    "PUT", "PATCH",
                                                             "DELETE", "OPTIONS", "HEAD"};
  for (std::string_view k : kKnown) {
    if (m == k) return k;
  }
  return "other";
}

// Keys of a JSON object given twice (simdjson's DOM keeps both).
std::optional<std::string_view> duplicate_key(simdjson::dom::object obj) {
  std::vector<std::string_view> keys;
  for (auto field : obj) keys.push_back(field.key);
  std::sort(keys.begin(), keys.end());
  const auto it = std::adjacent_find(keys.begin(), keys.end());
  if (it == keys.end()) return std::nullopt;
  return *it;
}

// A string field: stores it, or records "<what> must be a string." and answers false.
bool string_field(simdjson::dom::element value, const std::string& name, std::string_view what,
                  std::string& out, Api::FieldErrors& errors) {
  std::string_view v;
  if (value.get_string().get(v)) {
    add_error(errors, name, std::string(what) + " must be a string.");
    return false;
  }
  out = v;
  return true;
}

// custom_headers: null or {} clear them, an object of strings sets them in the order given.
bool headers_field(simdjson::dom::element value, const std::string& name,
                   std::vector<routing::Header>& out, Api::FieldErrors& errors) {
  out.clear();
  if (value.is_null()) return true;
  simdjson::dom::object headers;
  if (value.get_object().get(headers)) {
    add_error(errors, name, "custom_headers must be an object of strings (or null).");
    return false;
  }
  bool ok = true;
  for (auto h : headers) {
    std::string_view v;
    if (h.value.get_string().get(v)) {
      add_error(errors, name,
                "custom_headers: the value of \"" + std::string(h.key) + "\" must be a string.");
      ok = false;
    } else {
      out.push_back({std::string(h.key), std::string(v)});
    }
  }
  return ok;
}

// A body that must be one JSON object without repeated keys; nullopt with a `_schema` error.
std::optional<simdjson::dom::object> body_object(simdjson::dom::parser& parser,
                                                 std::string_view body, Api::FieldErrors& errors) {
  const simdjson::padded_string padded(body);
  simdjson::dom::element root;
  if (const auto err = parser.parse(padded).get(root); err) {
    add_error(errors, "_schema", std::string("Invalid JSON: ") + simdjson::error_message(err));
    return std::nullopt;
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) {
    add_error(errors, "_schema", "the body must be a JSON object.");
    return std::nullopt;
  }
  if (const auto dup = duplicate_key(obj)) {
    add_error(errors, "_schema", "key \"" + std::string(*dup) + "\" given more than once.");
    return std::nullopt;
  }
  return obj;
}

// A built-in payload per Partoo event type, for tryouts before any event was ingested.
std::string_view sample_payload(std::string_view type) {
  if (type == "business_created" || type == "business_updated") {
    return R"({"id":"tryout-business","name":"Tryout Bakery","city":"Paris","country":"FR"})";
  }
  if (type == "business_deleted") return R"({"id":"tryout-business"})";
  if (type == "message_created" || type == "message_updated") {
    return R"({"id":"tryout-message","conversation_id":"tryout-conversation","content":"Hello"})";
  }
  if (type == "lead_received") {
    return R"({"id":"tryout-lead","business_id":"tryout-business","email":"lead@example.com"})";
  }
  return R"({"tryout":true})";
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

// --- tryout request -----------------------------------------------------------------------------

class Api::TryoutRequest final : public transport::Request {
 public:
  TryoutRequest(Api* api, HttpResponder responder, const routing::Subscription& s,
                std::string type_name, std::string body_bytes, std::string event_id)
      : api_(api),
        responder_(responder),
        url_(s.url),
        host_(s.parts.host),
        target_(s.parts.target),
        type_(std::move(type_name)),
        body_(std::move(body_bytes)),
        event_id_(std::move(event_id)) {
    tls = s.parts.scheme == routing::Scheme::kHttps;
    host = host_;
    port = s.parts.port;
    target = target_;
    for (const auto& h : s.custom_headers) names_.push_back(h.name), values_.push_back(h.value);
    if (api->deps_.signer != nullptr) {
      signature_.resize(engine::Signer::kSignatureBase64Size);
      api->deps_.signer->sign_base64(body_, signature_.data());
    }
    for (std::size_t i = 0; i < names_.size(); ++i) views_.push_back({names_[i], values_[i]});
    views_.push_back({"X-Partoo-Webhook-Tryout", "true"});
    views_.push_back({"X-Partoo-Event-Id", event_id_, true});
    views_.push_back({"X-Partoo-Attempt", "1"});
    if (!signature_.empty()) views_.push_back({"X-Partoo-Signature-v1", signature_, true});
    headers = views_;
    body = body_;
  }

  void on_response(const transport::Response& r) override {
    const bool ok = r.failure == transport::Failure::kNone && r.status >= 200 && r.status < 300;
    Reply reply;
    reply.body = "{\"items\":[{\"url\":";
    json::append_string(reply.body, url_);
    reply.body += ",\"event_type\":";
    json::append_string(reply.body, type_);
    reply.body += ",\"success\":";
    reply.body += ok ? "true" : "false";
    reply.body += ",\"status_code\":";
    reply.body += r.failure == transport::Failure::kNone ? std::to_string(r.status) : "null";
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3f", static_cast<double>(r.total_us) / 1000.0);
    reply.body += ",\"duration_ms\":";
    reply.body += ms;
    reply.body += ",\"error\":";
    if (r.failure != transport::Failure::kNone) {
      // The failure's name, and for TLS its reason (a certificate problem the user can fix),
      // but never the transport's other details: they name resolved addresses, and a tryout
      // must not tell which internal addresses a name has or which ports answer.
      std::string err(transport::to_string(r.failure));
      if (r.failure == transport::Failure::kAddressRefused) {
        err += ": the host's addresses are not allowed (private, loopback, link-local or reserved)";
      } else if (r.failure == transport::Failure::kTlsFailure && !r.detail.empty()) {
        err.append(": ").append(r.detail);
      }
      json::append_string(reply.body, err);
    } else if (!ok) {
      json::append_string(reply.body, "HTTP status " + std::to_string(r.status));
    } else {
      reply.body += "null";
    }
    reply.body += "}]}";
    log::info("tryout", {{"event_id", event_id_},
                         {"status", std::to_string(r.status)},
                         {"failure", std::string(transport::to_string(r.failure))}});
    api_->answer_later(responder_, reply, "POST", "/v2/webhooks/tryout");
    delete this;
  }

 private:
  Api* api_;
  HttpResponder responder_;
  std::string url_, host_, target_, type_, body_, event_id_, signature_;
  std::vector<std::string> names_, values_;
  std::vector<transport::HeaderView> views_;
};

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

bool Api::dispatch(const HttpRequest& req, HttpResponder responder, std::string_view& route,
                   Reply& reply) {
  const std::size_t qpos = req.target.find('?');
  const std::string_view path = req.target.substr(0, qpos);
  const Query query =
      qpos == std::string_view::npos ? Query() : parse_query(req.target.substr(qpos + 1));
  const std::string_view m = req.method;
  auto method_not_allowed = [&](std::string_view allow) {
    reply.status = 405;
    reply.body = R"({"error":{"json":"Method not allowed"}})";
    reply.headers.emplace_back("allow", std::string(allow));
    return true;
  };

  if (path == "/healthz") {
    route = "/healthz";
    if (m != "GET") return method_not_allowed("GET");
    reply.status = stopping_ ? 503 : 200;
    reply.body = stopping_ ? R"({"status":"stopping"})" : R"({"status":"ok"})";
    return true;
  }
  if (path == "/metrics") {
    route = "/metrics";
    if (m != "GET") return method_not_allowed("GET");
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply.body = deps_.metrics->render(deps_.engine->stats(), subscriptions_);
    return true;
  }
  if (web(path, m, route, reply)) return true;
  if (path == "/v2/me") {
    route = "/v2/me";
    if (m != "GET") return method_not_allowed("GET");
    me(req, reply);
    return true;
  }
  if (path == "/v2/events") {
    route = "/v2/events";
    if (m != "POST") return method_not_allowed("POST");
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
  const std::string_view rest = path.substr(kBase.size());
  enum class Kind {
    kCollection,
    kEvents,
    kTryout,
    kItem,
    kDeliveries,
    kResend,
    kRecover,
    kRotate
  } kind;
  std::int64_t id = 0;
  std::string event_id;  // kResend
  if (rest.empty()) {
    kind = Kind::kCollection;
    route = "/v2/webhooks";
    if (m != "GET" && m != "POST") return method_not_allowed("GET, POST");
  } else if (rest == "/events") {
    kind = Kind::kEvents;
    route = "/v2/webhooks/events";
    if (m != "GET") return method_not_allowed("GET");
  } else if (rest == "/tryout") {
    kind = Kind::kTryout;
    route = "/v2/webhooks/tryout";
    if (m != "POST") return method_not_allowed("POST");
  } else if (rest.front() == '/') {
    // /{id}, /{id}/deliveries, /{id}/deliveries/{event_id}/resend, /{id}/recover
    const std::size_t slash = rest.find('/', 1);
    const auto parsed = parse_positive(
        rest.substr(1, slash == std::string_view::npos ? std::string_view::npos : slash - 1));
    const std::string_view sub =
        slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    constexpr std::string_view kDeliveries = "/deliveries", kResend = "/resend";
    if (sub.empty()) {
      kind = Kind::kItem;
      route = "/v2/webhooks/{id}";
      if (m != "GET" && m != "PUT" && m != "PATCH" && m != "DELETE") {
        return method_not_allowed("GET, PUT, PATCH, DELETE");
      }
    } else if (sub == kDeliveries) {
      kind = Kind::kDeliveries;
      route = "/v2/webhooks/{id}/deliveries";
      if (m != "GET") return method_not_allowed("GET");
    } else if (sub == "/secret/rotate") {
      kind = Kind::kRotate;
      route = "/v2/webhooks/{id}/secret/rotate";
      if (m != "POST") return method_not_allowed("POST");
    } else if (sub == "/recover") {
      kind = Kind::kRecover;
      route = "/v2/webhooks/{id}/recover";
      if (m != "POST") return method_not_allowed("POST");
    } else if (sub.size() > kDeliveries.size() + 1 + kResend.size() &&
               sub.substr(0, kDeliveries.size() + 1) == "/deliveries/" &&
               sub.substr(sub.size() - kResend.size()) == kResend) {
      kind = Kind::kResend;
      route = "/v2/webhooks/{id}/deliveries/{event_id}/resend";
      if (m != "POST") return method_not_allowed("POST");
      event_id = url_decode(
          sub.substr(kDeliveries.size() + 1, sub.size() - kDeliveries.size() - 1 - kResend.size()));
    } else {
      not_found(reply);
      return true;
    }
    if (!parsed) {
      not_found(reply);
      return true;
    }
    id = *parsed;
  } else {
    not_found(reply);
    return true;
  }

  ApiKey key;
  if (!authenticate(req, /*ingest=*/false, key, reply)) return true;
  // Query parameters: list takes page and per_page; every route takes org_id.
  for (const auto& param : query) {
    // Not a structured binding: clang before 16 cannot capture one in the lambda below.
    const std::string& name = param.first;
    const bool paging = ((kind == Kind::kCollection && m == "GET") || kind == Kind::kDeliveries) &&
                        (name == "page" || name == "per_page");
    const bool own = (kind == Kind::kDeliveries && name == "outcome") ||
                     (kind == Kind::kRecover && name == "since");
    if (name != "org_id" && !paging && !own) {
      field_error(reply, name, "Unknown field.");
      return true;
    }
    if (std::count_if(query.begin(), query.end(), [&](const auto& p) { return p.first == name; }) >
        1) {
      field_error(reply, name, "given more than once.");
      return true;
    }
  }
  Caller caller;
  caller.key = std::move(key);
  if (!resolve_org(caller.key, query, kind != Kind::kEvents, caller, reply)) return true;
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
  const bool has_body = (m == "POST" || m == "PUT" || m == "PATCH") && kind != Kind::kResend &&
                        kind != Kind::kRecover && kind != Kind::kRotate;
  if (has_body && !check_body(req, deps_.config->api_max_body_bytes, false, reply)) return true;

  switch (kind) {
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
      history(caller, id, query, reply);
      return true;
    case Kind::kResend:
      return !resend(caller, id, event_id, responder, reply);
    case Kind::kRecover:
      return !recover(caller, id, query, responder, reply);
    case Kind::kRotate:
      rotate_secret(caller, id, reply);
      return true;
    case Kind::kItem:
      if (m == "GET") {
        get_one(caller, id, reply);
      } else if (m == "DELETE") {
        remove(caller, id, reply);
      } else {
        update(caller, id, req.body, reply);
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

std::string Api::config_json(const routing::Subscription& s, bool with_secret) const {
  std::string out = "{\"id\":";
  json::append_int(out, s.id);
  out += ",\"org_id\":";
  json::append_int(out, s.org_id);
  out += ",\"event_type\":";
  json::append_string(out, deps_.engine->catalogue().name(s.event_type));
  out += ",\"url\":";
  json::append_string(out, s.url);
  out += ",\"custom_headers\":{";
  for (std::size_t i = 0; i < s.custom_headers.size(); ++i) {
    if (i != 0) out.push_back(',');
    json::append_key(out, s.custom_headers[i].name);
    json::append_string(out, s.custom_headers[i].value);
  }
  out += "},\"created_at\":";
  json::append_string(out, format_timestamp(s.created_at_us));
  out += ",\"updated_at\":";
  json::append_string(out, format_timestamp(s.updated_at_us));
  append_signing(out, s, with_secret);
  out += '}';
  return out;
}

// --- webhook routes -----------------------------------------------------------------------------

void Api::list(const Caller& c, const Query& q, Reply& reply) {
  std::int64_t page = 1, per_page = kDefaultPerPage;
  if (!parse_paging(q, page, per_page, reply)) return;
  auto result = deps_.store->list(c.org, page_offset(page, per_page), per_page);
  if (!result) return db_error("list", result.error(), reply);
  begin_page(reply.body, page, per_page, result->count);
  for (std::size_t i = 0; i < result->items.size(); ++i) {
    if (i != 0) reply.body.push_back(',');
    reply.body += config_json(result->items[i]);
  }
  reply.body += "]}";
}

namespace api_detail {

bool parse_items(simdjson::dom::parser& parser, std::string_view body, std::int64_t org,
                 const routing::EventCatalogue& catalogue, const Config& config,
                 std::vector<routing::Subscription>& out, Api::FieldErrors& errors) {
  const auto obj = body_object(parser, body, errors);
  if (!obj) return false;
  simdjson::dom::array items;
  bool have_items = false;
  for (auto field : *obj) {
    if (field.key != "items") {
      add_error(errors, std::string(field.key), "Unknown field.");
      continue;
    }
    have_items = true;
    if (field.value.get_array().get(items)) add_error(errors, "items", "items must be an array.");
  }
  if (!have_items) add_error(errors, "items", "Missing data for required field.");
  if (!errors.empty()) return false;
  const std::size_t n = items.size();
  if (n == 0 || n > kMaxItems) {
    add_error(errors, "items",
              "items must hold 1 to 100 webhooks (got " + std::to_string(n) + ").");
    return false;
  }
  const routing::ValidationOptions vopt{.allow_insecure_http = config.engine.insecure};
  std::size_t index = 0;
  for (simdjson::dom::element el : items) {
    const std::string prefix = "items." + std::to_string(index++) + ".";
    simdjson::dom::object item;
    if (el.get_object().get(item)) {
      add_error(errors, prefix.substr(0, prefix.size() - 1), "each item must be an object.");
      continue;
    }
    if (const auto dup = duplicate_key(item)) {
      add_error(errors, prefix + std::string(*dup), "given more than once.");
      continue;
    }
    routing::SubscriptionSpec spec;
    spec.org_id = org;
    routing::WebhookSigning signing = routing::WebhookSigning::kDefault;
    bool have_url = false, have_type = false, ok = true;
    for (auto field : item) {
      const std::string name = prefix + std::string(field.key);
      if (field.key == "url") {
        have_url = true;
        ok = string_field(field.value, name, "url", spec.url, errors) && ok;
      } else if (field.key == "event_type") {
        have_type = true;
        ok = string_field(field.value, name, "event_type", spec.event_type, errors) && ok;
      } else if (field.key == "custom_headers") {
        ok = headers_field(field.value, name, spec.custom_headers, errors) && ok;
      } else if (field.key == "signing") {
        ok = signing_field(field.value, name, signing, errors) && ok;
      } else {
        add_error(errors, name, "Unknown field.");
        ok = false;
      }
    }
    for (const auto& [present, field] : {std::pair{have_url, "url"}, {have_type, "event_type"}}) {
      if (!present) {
        add_error(errors, prefix + field, "Missing data for required field.");
        ok = false;
      }
    }
    if (!ok) continue;
    auto valid = routing::validate(spec, catalogue, vopt);
    if (!valid) {
      for (const auto& v : valid.error()) add_error(errors, prefix + v.field, violation_message(v));
      continue;
    }
    if (!check_port(config, *valid, prefix + "url", errors)) continue;
    valid->signing = signing;
    out.push_back(std::move(*valid));
  }
  return errors.empty();
}

bool parse_update(simdjson::dom::parser& parser, std::string_view body,
                  const routing::Subscription& cur, const routing::EventCatalogue& catalogue,
                  const Config& config, routing::Subscription& out, Api::FieldErrors& errors) {
  const std::string_view type_name = catalogue.name(cur.event_type);
  const auto obj = body_object(parser, body, errors);
  if (!obj) return false;
  routing::SubscriptionSpec spec{cur.org_id, std::string(type_name), cur.url, cur.custom_headers};
  routing::WebhookSigning signing = cur.signing;
  for (auto field : *obj) {
    const std::string name(field.key);
    if (field.key == "signing") {
      (void)signing_field(field.value, name, signing, errors);
    } else if (field.key == "url") {
      (void)string_field(field.value, name, "url", spec.url, errors);
    } else if (field.key == "custom_headers") {
      (void)headers_field(field.value, name, spec.custom_headers, errors);
    } else if (field.key == "event_type") {
      std::string v;
      if (string_field(field.value, name, "event_type", v, errors) && v != type_name) {
        add_error(errors, name,
                  "event_type cannot be changed (it is " + std::string(type_name) +
                      "); create another webhook instead [event_type_immutable]");
      }
    } else {
      add_error(errors, name, "Unknown field.");
    }
  }
  if (!errors.empty()) return false;
  auto valid = routing::validate(
      spec, catalogue, routing::ValidationOptions{.allow_insecure_http = config.engine.insecure});
  if (!valid) {
    for (const auto& v : valid.error()) add_error(errors, v.field, violation_message(v));
    return false;
  }
  if (!check_port(config, *valid, "url", errors)) return false;
  out = std::move(*valid);
  out.signing = signing;
  return true;
}

bool check_port(const Config& config, const routing::Subscription& s, const std::string& field,
                Api::FieldErrors& errors) {
  if (port_allowed(config.allowed_ports, s.parts.port)) return true;
  std::string allowed;
  for (const std::string& r : config.allowed_ports) {
    allowed += (allowed.empty() ? "" : ", ") + r;
  }
  add_error(errors, field,
            "url: port " + std::to_string(s.parts.port) + " is not allowed (allowed_ports: " +
                (allowed.empty() ? std::string("80, 443, 1024-65535") : allowed) +
                ") [url_port_not_allowed]");
  return false;
}

}  // namespace api_detail

bool Api::parse_items(std::string_view body, std::int64_t org,
                      std::vector<routing::Subscription>& out, FieldErrors& errors) {
  return api_detail::parse_items(json_, body, org, deps_.engine->catalogue(), *deps_.config, out,
                                 errors);
}

void Api::create(const Caller& c, std::string_view body, Reply& reply) {
  std::vector<routing::Subscription> items;
  FieldErrors errors;
  if (!parse_items(body, c.org, items, errors)) return set_field_errors(reply, errors);
  // Each webhook gets its Standard Webhooks secret now (shown once, below, when in use).
  for (auto& s : items) s.webhook_secret = engine::new_webhook_secret();
  auto created = deps_.store->create(std::move(items), now_unix_us());
  if (!created) {
    const StoreError& e = created.error();
    if (e.kind != StoreError::Kind::kDuplicate) return db_error("create", e.message, reply);
    std::string msg = e.existing_id != 0
                          ? "a webhook for this organisation and event type exists already (id " +
                                std::to_string(e.existing_id) + ") [duplicate]"
                          : "this event type appears more than once in the request [duplicate]";
    return field_error(reply, "items." + std::to_string(e.index) + ".event_type", msg);
  }
  // Committed: now the routing table.
  reply.body = "{\"items\":[";
  for (std::size_t i = 0; i < created->size(); ++i) {
    const routing::Subscription& s = (*created)[i];
    if (i != 0) reply.body.push_back(',');
    reply.body += config_json(s, /*with_secret=*/true);
    deps_.engine->upsert(s);
    ++subscriptions_;
    log::info("webhook created",
              {{"id", std::to_string(s.id)},
               {"org_id", std::to_string(s.org_id)},
               {"event_type", std::string(deps_.engine->catalogue().name(s.event_type))}});
  }
  reply.body += "]}";
}

void Api::get_one(const Caller& c, std::int64_t id, Reply& reply) {
  auto s = deps_.store->get(id);
  if (!s) return db_error("get", s.error(), reply);
  if (!*s || (*s)->org_id != c.org) return not_found(reply);
  reply.body = config_json(**s);
}

void Api::update(const Caller& c, std::int64_t id, std::string_view body, Reply& reply) {
  auto existing = deps_.store->get(id);
  if (!existing) return db_error("get", existing.error(), reply);
  if (!*existing || (*existing)->org_id != c.org) return not_found(reply);
  const routing::Subscription& cur = **existing;
  FieldErrors errors;
  routing::Subscription valid;
  if (!parse_update(json_, body, cur, deps_.engine->catalogue(), *deps_.config, valid, errors)) {
    return set_field_errors(reply, errors);
  }
  if (valid.url == cur.url && valid.custom_headers == cur.custom_headers &&
      valid.signing == cur.signing) {
    reply.body = config_json(cur);  // nothing changed: updated_at stays
    return;
  }
  valid.id = cur.id;
  valid.created_at_us = cur.created_at_us;
  valid.webhook_secret = cur.webhook_secret;
  auto stored = deps_.store->update(valid, now_unix_us());
  if (!stored) {
    if (stored.error().kind == StoreError::Kind::kNotFound) return not_found(reply);
    return db_error("update", stored.error().message, reply);
  }
  deps_.engine->upsert(*stored);
  log::info("webhook updated", {{"id", std::to_string(id)}, {"org_id", std::to_string(c.org)}});
  reply.body = config_json(*stored);
}

void Api::remove(const Caller& c, std::int64_t id, Reply& reply) {
  auto existing = deps_.store->get(id);
  if (!existing) return db_error("get", existing.error(), reply);
  if (!*existing || (*existing)->org_id != c.org) return not_found(reply);
  auto removed = deps_.store->remove(id);
  if (!removed) {
    if (removed.error().kind == StoreError::Kind::kNotFound) return not_found(reply);
    return db_error("delete", removed.error().message, reply);
  }
  deps_.engine->remove((*existing)->org_id,
                       deps_.engine->catalogue().name((*existing)->event_type));
  if (subscriptions_ > 0) --subscriptions_;
  log::info("webhook deleted", {{"id", std::to_string(id)}, {"org_id", std::to_string(c.org)}});
  reply.status = 204;
  reply.body.clear();
}

void Api::events(Reply& reply) {
  const routing::EventCatalogue& cat = deps_.engine->catalogue();
  reply.body = "[";
  for (std::size_t i = 0; i < cat.size(); ++i) {
    if (i != 0) reply.body.push_back(',');
    json::append_string(reply.body, cat.name(static_cast<routing::EventTypeId>(i)));
  }
  reply.body += "]";
}

bool Api::tryout(const Caller& c, std::string_view body, HttpResponder responder, Reply& reply) {
  std::vector<routing::Subscription> items;
  FieldErrors errors;
  if (!parse_items(body, c.org, items, errors)) {
    set_field_errors(reply, errors);
    return true;
  }
  // Tryouts have a budget of their own per organisation (a tryout is an outgoing request).
  if (const std::uint32_t wait = tryout_limiter_.take(c.org, uv_hrtime() / 1'000'000); wait != 0) {
    set_error(reply, 429, "rate_limit",
              std::to_string(deps_.config->api_tryout_rate_limit_per_minute) +
                  " tryouts per minute per organisation; retry after " + std::to_string(wait) +
                  " s");
    reply.headers.emplace_back("retry-after", std::to_string(wait));
    return true;
  }
  if (deps_.tryout_client == nullptr || stopping_) {
    set_error(reply, 503, "json", "the daemon is stopping");
    reply.headers.emplace_back("retry-after", "1");
    return true;
  }
  const routing::Subscription& s = items.front();
  const std::string type_name(deps_.engine->catalogue().name(s.event_type));
  const auto it = latest_.find({c.org, s.event_type});
  const std::string_view payload =
      it != latest_.end() ? std::string_view(it->second) : sample_payload(type_name);
  char id[40];
  std::snprintf(id, sizeof id, "tryout-%016llx",
                static_cast<unsigned long long>(uv_hrtime() ^ (++tryout_seq_ << 48)));
  auto* request = new TryoutRequest(this, responder, s, type_name,
                                    routing::build_delivery_body(type_name, payload), id);
  deps_.tryout_client->submit(*request);
  return false;
}

}  // namespace fanout::daemon
