// fanoutd's HTTP routes (tools/fanoutd/README.md, "HTTP API"): the Partoo-compatible management
// API /v2/webhooks (docs/webhook-contract.md §2), ingest /v2/events, tryout, /metrics and /healthz.
//
// Every request is handled on the daemon's loop thread, synchronously apart from tryout (one
// POST through the daemon's own transport::Client, answered from its on_response). A management
// change is validated whole, written in one Store transaction, and only after the commit applied
// to the engine's routing table: the table never holds what the store does not. A refused
// request changes nothing.
//
// Order of checks: route (404/405) → authentication (401) → role (403) → query and org_id
// (400/403) → rate limit (429) → body size (413) → content type (415) → body (400).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/key_cache.h"
#include "tools/fanoutd/metrics.h"
#include "tools/fanoutd/rate_limit.h"
#include "tools/fanoutd/store.h"
#include "transport/client/client.h"
#include "transport/server/http_server.h"

namespace fanout::daemon {

struct ApiDeps {
  const Config* config = nullptr;
  Store* store = nullptr;
  Engine* engine = nullptr;
  Metrics* metrics = nullptr;
  transport::Client* tryout_client = nullptr;  // on the same loop
  const engine::Signer* signer = nullptr;      // null: tryouts are not signed
  std::uint64_t subscriptions = 0;             // loaded at start
};

class Api final : public transport::HttpRequestHandler {
 public:
  explicit Api(ApiDeps deps);
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  void on_request(const transport::HttpRequest& request,
                  transport::HttpResponder responder) override;
  // A request with a body, on its headers (api_early.cc): a /v2/ route with a missing, wrong or
  // revoked key (or from an address past api.failed_auth_per_minute) is answered 401 (429) now,
  // exactly as on_request would, before its body is read or buffered.
  transport::EarlyAnswer on_headers(const transport::HttpRequest& head) override;

  // From now on /healthz answers 503 and ingest answers busy.
  void set_stopping() noexcept { stopping_ = true; }

  // Durability. note_commit() is called on the journal's thread after each group commit (any
  // thread; it only records a failed range); on_journal_commit() then runs on the loop thread
  // and sends every waiting answer whose events are now on disk, or lost (503).
  void note_commit(std::uint64_t first_seq, std::uint64_t last_seq, bool ok);
  void on_journal_commit();
  // Answers still waiting for the journal.
  [[nodiscard]] std::size_t waiting() const noexcept { return waiting_.size(); }
  [[nodiscard]] std::uint64_t subscriptions() const noexcept { return subscriptions_; }
  // The routing table's size after changes made by another instance (sync.h) were applied.
  void set_subscriptions(std::uint64_t n) noexcept { subscriptions_ = n; }

  // An answer being built. `json` bodies get Content-Type: application/json.
  struct Reply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
  };
  // The caller of an authenticated webhook route: its key and the organisation it acts for.
  struct Caller {
    ApiKey key;
    std::int64_t org = 0;  // 0 for GET /v2/webhooks/events without org_id
  };
  using Query = std::vector<std::pair<std::string, std::string>>;
  // field → messages, in first-seen order; rendered as Partoo's 400 shape.
  using FieldErrors = std::vector<std::pair<std::string, std::string>>;

 private:
  class TryoutRequest;
  friend class TryoutRequest;

  // Returns false when the answer is deferred (tryout): the responder answers later.
  bool dispatch(const transport::HttpRequest& req, transport::HttpResponder responder,
                std::string_view& route, Reply& reply);
  // /v2/webhooks and below (REST: the path after /v2/webhooks): which route, and `route` for the
  // metrics; false with a 404 or 405 in `reply`.
  struct WebhookRoute;
  static bool match_webhook(std::string_view rest, std::string_view method, WebhookRoute& w,
                            std::string_view& route, Reply& reply);
  // Its query parameters: false with a 400 in `reply` for an unknown or repeated one.
  static bool check_webhook_query(const WebhookRoute& w, std::string_view method,
                                  const Query& query, Reply& reply);
  // Authentication, query, organisation, rate limit and body checks, then the route (as
  // dispatch() returns).
  bool dispatch_webhook(const transport::HttpRequest& req, transport::HttpResponder responder,
                        const Query& query, const WebhookRoute& w, Reply& reply);

  // The app page and its files (api_web.cc): true when `path` is one of them (answered).
  bool web(std::string_view path, std::string_view method, std::string_view& route, Reply& reply);
  // GET /v2/me: the key's role and organisations (any role; the page signs in with it).
  void me(const transport::HttpRequest& req, Reply& reply);
  // The presented key's principal (401: missing or unknown; 429: this client address failed
  // too often). Cached for 1 s (key_cache.h).
  bool lookup_key(const transport::HttpRequest& req, ApiKey& key, Reply& reply);
  bool authenticate(const transport::HttpRequest& req, bool ingest, ApiKey& key, Reply& reply);
  bool resolve_org(const ApiKey& key, const Query& query, bool org_required, Caller& caller,
                   Reply& reply);
  bool check_body(const transport::HttpRequest& req, std::size_t max_bytes, bool ndjson_ok,
                  Reply& reply);

  void list(const Caller& c, const Query& q, Reply& reply);
  void create(const Caller& c, std::string_view body, Reply& reply);
  void get_one(const Caller& c, std::int64_t id, Reply& reply);
  void update(const Caller& c, std::int64_t id, std::string_view body, Reply& reply);
  void remove(const Caller& c, std::int64_t id, Reply& reply);
  void events(Reply& reply);
  bool tryout(const Caller& c, std::string_view body, transport::HttpResponder responder,
              Reply& reply);
  // false when the answer waits for the journal (sent by on_journal_commit()).
  bool ingest(const transport::HttpRequest& req, const ApiKey& key,
              transport::HttpResponder responder, Reply& reply);
  // Delivery history (api_history.cc). resend() and recover() return true when deferred.
  bool visible_webhook(const Caller& c, std::int64_t id, Reply& reply);
  void history(const Caller& c, std::int64_t id, const Query& q, Reply& reply);
  bool resend(const Caller& c, std::int64_t id, std::string_view event_id,
              transport::HttpResponder responder, Reply& reply);
  bool recover(const Caller& c, std::int64_t id, const Query& q, transport::HttpResponder responder,
               Reply& reply);
  // Keeps `reply` until journal sequences [first_seq, last_seq] are on disk; false (nothing
  // kept) when there is nothing to wait for.
  bool defer(std::uint64_t first_seq, std::uint64_t last_seq, transport::HttpResponder responder,
             Reply& reply, std::string_view route);

  // Parses {"items":[...]} into validated subscriptions for org `org`; false with `errors`.
  bool parse_items(std::string_view body, std::int64_t org, std::vector<routing::Subscription>& out,
                   FieldErrors& errors);

  // with_secret: the create answer's "secret" (when Standard Webhooks are shown for `s`).
  std::string config_json(const routing::Subscription& s, bool with_secret = false) const;

  // Standard Webhooks (api_signing.cc). Whether a config shows "signing" (the daemon's option
  // is on, or its own is not "default"), and those fields; POST /v2/webhooks/{id}/secret/rotate.
  bool signing_shown(const routing::Subscription& s) const;
  void append_signing(std::string& out, const routing::Subscription& s, bool with_secret) const;
  void rotate_secret(const Caller& c, std::int64_t id, Reply& reply);
  void send(transport::HttpResponder responder, const Reply& reply);
  // A deferred answer (tryout, durability): counted in the metrics, then sent.
  void answer_later(transport::HttpResponder responder, const Reply& reply, std::string_view method,
                    std::string_view route);
  void db_error(std::string_view what, const std::string& message, Reply& reply);
  void finish(const transport::HttpRequest& req, std::string_view route,
              transport::HttpResponder responder, const Reply& reply);

  ApiDeps deps_;
  Producer producer_;
  RateLimiter limiter_;
  RateLimiter tryout_limiter_;        // api.tryout_rate_limit_per_minute, per organisation
  RateLimiter auth_failures_;         // api.failed_auth_per_minute, per client address
  KeyCache key_cache_{1000, 65'536};  // principals for 1 s: revocation within 1 s
  // on_headers() runs dispatch() on the headers alone (probing_): it stops at authenticate(),
  // which sets probe_passed_ for a good key. Its answer lives in early_ until the server copied it.
  bool probing_ = false;
  bool probe_passed_ = false;
  Reply early_;
  std::vector<transport::HttpHeaderView> early_headers_;
  simdjson::dom::parser json_;
  // The latest payload ingested per (org_id, event_type), for tryout (at most kMaxLatest pairs).
  std::map<std::pair<std::int64_t, routing::EventTypeId>, std::string> latest_;
  std::uint64_t subscriptions_ = 0;
  std::uint64_t tryout_seq_ = 0;
  bool stopping_ = false;
  struct Waiting {
    std::uint64_t first_seq, last_seq;
    transport::HttpResponder responder;
    Reply reply;
    std::string_view route;  // a literal
  };
  std::deque<Waiting> waiting_;
  std::mutex failed_mu_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> failed_;  // lost journal ranges
};

}  // namespace fanout::daemon
