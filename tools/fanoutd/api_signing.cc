// Standard Webhooks signing in fanoutd's API (tools/fanoutd/README.md, "Standard Webhooks"):
//
//   "signing" on create items and on PUT/PATCH: "default" (the daemon's [signing]
//     standard_webhooks), "off", "v1a", "v1" or "both"; optional, default "default".
//   POST /v2/webhooks/{id}/secret/rotate  → 200 {"id":N,"secret":"whsec_..."}: a new HMAC secret,
//     the old one refused from the next attempt on; the only other time a secret is shown is in
//     the create answer.
//
// Partoo compatibility: a config carries "signing" (and a create answer "secret") only when
// Standard Webhooks are in use for it — the daemon's option is not "off", or the webhook's own
// signing is not "default" — so with the default configuration every answer is byte for byte
// what it was before. Same roles, organisation rules, rate limit and error shapes as the other
// webhook routes (the dispatch in api.cc checks them first).
#include <sodium.h>

#include "engine/standard_webhooks.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/api_signing.h"
#include "tools/fanoutd/log.h"

namespace fanout::daemon {

using namespace api_detail;

namespace api_detail {

bool signing_field(simdjson::dom::element value, const std::string& name,
                   routing::WebhookSigning& out, Api::FieldErrors& errors) {
  std::string_view v;
  const auto parsed = value.get_string().get(v) ? std::nullopt : routing::parse_webhook_signing(v);
  if (!parsed) {
    add_error(errors, name,
              "signing must be one of \"default\", \"off\", \"v1a\", \"v1\", \"both\". "
              "[signing_unknown]");
    return false;
  }
  out = *parsed;
  return true;
}

}  // namespace api_detail

bool Api::signing_shown(const routing::Subscription& s) const {
  return s.signing != routing::WebhookSigning::kDefault ||
         deps_.config->engine.standard_webhooks != routing::WebhookSigning::kOff;
}

void Api::append_signing(std::string& out, const routing::Subscription& s, bool with_secret) const {
  if (!signing_shown(s)) return;
  out += ",\"signing\":";
  json::append_string(out, routing::to_string(s.signing));
  if (with_secret && !s.webhook_secret.empty()) {
    std::string secret = engine::encode_webhook_secret(s.webhook_secret);
    out += ",\"secret\":";
    json::append_string(out, secret);
    sodium_memzero(secret.data(), secret.size());
  }
}

void Api::rotate_secret(const Caller& c, std::int64_t id, Reply& reply) {
  auto existing = deps_.store->get(id);
  if (!existing) return db_error("get", existing.error(), reply);
  if (!*existing || (*existing)->org_id != c.org) return not_found(reply);
  std::string secret = engine::new_webhook_secret();
  auto stored = deps_.store->rotate_secret(id, secret);
  sodium_memzero(secret.data(), secret.size());
  if (!stored) {
    if (stored.error().kind == StoreError::Kind::kNotFound) return not_found(reply);
    return db_error("rotate secret", stored.error().message, reply);
  }
  // Committed: the next attempt of every delivery to this webhook signs with the new secret.
  deps_.engine->upsert(*stored);
  log::info("webhook secret rotated",
            {{"id", std::to_string(id)}, {"org_id", std::to_string(c.org)}});
  std::string text = engine::encode_webhook_secret(stored->webhook_secret);
  reply.body = "{\"id\":";
  json::append_int(reply.body, id);
  reply.body += ",\"secret\":";
  json::append_string(reply.body, text);
  reply.body += '}';
  sodium_memzero(text.data(), text.size());
  sodium_memzero(stored->webhook_secret.data(), stored->webhook_secret.size());
}

}  // namespace fanout::daemon
