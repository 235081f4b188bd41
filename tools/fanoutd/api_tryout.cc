// fanoutd's POST /v2/webhooks/tryout (api.h): one delivery of the latest ingested payload (or a
// built-in sample) to each subscription of the body, without storing it; answered when every
// delivery has its outcome.
#include <uv.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/standard_webhooks.h"
#include "fanout/version.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/api_signing.h"
#include "tools/fanoutd/log.h"

namespace fanout::daemon {

using transport::HttpRequest;
using transport::HttpResponder;

using namespace api_detail;

namespace {

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

}  // namespace

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
