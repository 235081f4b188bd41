// fanoutd's webhook routes (api.h): list, create, get, update, delete, the event types, and
// the parsing of their bodies (api_internal.h). Ingest is api_ingest.cc, tryout api_tryout.cc.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/standard_webhooks.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/api_signing.h"
#include "tools/fanoutd/log.h"

namespace fanout::daemon {

namespace api_detail {

constexpr std::size_t kMaxItems = 100;

std::string violation_message(const routing::Violation& v) {
  return v.message + " [" + std::string(routing::rule_name(v.rule)) + "]";
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

}  // namespace api_detail

using namespace api_detail;

// A webhook as the API shows it (docs/webhook-contract.md §2).
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

}  // namespace fanout::daemon
