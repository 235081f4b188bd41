// fanoutd's delivery history routes (tools/fanoutd/README.md, "Delivery history"):
//
//   GET  /v2/webhooks/{id}/deliveries?page=&per_page=&outcome=   newest first, with attempts
//   POST /v2/webhooks/{id}/deliveries/{event_id}/resend          a new delivery, attempts from 1
//   POST /v2/webhooks/{id}/recover?since=ISO8601                 resend every exhausted one since
//
// Same roles, organisation rules, rate limit and error shapes as the other webhook routes (the
// dispatch in api.cc checks them first); a webhook of another organisation is a 404. They read
// the engine's journal, so they need durability: with --no-durable they answer 501. A resend is
// answered once the new delivery is on disk, like an ingested event.
#include <ctime>

#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"

namespace fanout::daemon {

using namespace api_detail;

namespace {

// "2024-11-27T16:10:44Z", with optional fractional seconds and a "Z" or "±hh:mm" offset; a date
// alone ("2024-11-27") is midnight UTC. Milliseconds since the epoch, or nullopt.
std::optional<std::int64_t> parse_iso8601(std::string_view s) {
  auto digits = [&s](std::size_t at, std::size_t n) -> std::optional<int> {
    if (at + n > s.size()) return std::nullopt;
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return std::nullopt;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  const auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
  if (!year || !month || !day || s.size() < 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > 31) return std::nullopt;
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  std::int64_t millis = 0, offset_s = 0;
  std::size_t at = 10;
  if (at < s.size()) {
    if (s[at] != 'T' && s[at] != 't' && s[at] != ' ') return std::nullopt;
    const auto hh = digits(at + 1, 2), mm = digits(at + 4, 2), ss = digits(at + 7, 2);
    if (!hh || !mm || !ss || s[at + 3] != ':' || s[at + 6] != ':') return std::nullopt;
    if (*hh > 23 || *mm > 59 || *ss > 60) return std::nullopt;
    tm.tm_hour = *hh;
    tm.tm_min = *mm;
    tm.tm_sec = *ss;
    at += 9;
    if (at < s.size() && s[at] == '.') {
      std::size_t n = 0;
      std::int64_t scale = 100;
      for (++at; at < s.size() && s[at] >= '0' && s[at] <= '9'; ++at, ++n) {
        millis += (s[at] - '0') * scale;
        scale /= 10;
      }
      if (n == 0) return std::nullopt;
    }
    if (at == s.size()) return std::nullopt;  // a time needs its zone
    if (s[at] == 'Z' || s[at] == 'z') {
      ++at;
    } else if (s[at] == '+' || s[at] == '-') {
      const auto oh = digits(at + 1, 2), om = digits(at + 4, 2);
      if (!oh || !om || s.size() < at + 6 || s[at + 3] != ':' || *oh > 23 || *om > 59) {
        return std::nullopt;
      }
      offset_s = (*oh * 3600 + *om * 60) * (s[at] == '+' ? 1 : -1);
      at += 6;
    }
    if (at != s.size()) return std::nullopt;
  }
  const std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return (static_cast<std::int64_t>(t) - offset_s) * 1000 + millis;
}

void durability_off(Api::Reply& reply) {
  set_error(reply, 501, "json",
            "delivery history needs durability: this fanoutd runs with --no-durable");
}

void append_time(std::string& out, std::int64_t unix_ms) {
  json::append_string(out, format_timestamp(unix_ms * 1000));
}

}  // namespace

// The webhook `id` as the caller may see it; false with the answer in `reply`.
bool Api::visible_webhook(const Caller& c, std::int64_t id, Reply& reply) {
  auto s = deps_.store->get(id);
  if (!s) {
    db_error("get", s.error(), reply);
    return false;
  }
  if (!*s || (*s)->org_id != c.org) {
    not_found(reply);
    return false;
  }
  if (!deps_.engine->durable()) {
    durability_off(reply);
    return false;
  }
  return true;
}

void Api::history(const Caller& c, std::int64_t id, const Query& q, Reply& reply) {
  std::int64_t page = 1, per_page = kDefaultPerPage;
  if (!parse_paging(q, page, per_page, reply)) return;
  std::string outcome;
  for (const auto& [name, value] : q) {
    if (name != "outcome") continue;
    if (value != "pending" && value != "delivered" && value != "rejected" && value != "exhausted" &&
        value != "dropped") {
      return field_error(reply, "outcome",
                         "outcome must be one of pending, delivered, rejected, exhausted, "
                         "dropped.");
    }
    outcome = value;
  }
  if (!visible_webhook(c, id, reply)) return;
  auto result = deps_.engine->deliveries(id, outcome, page_offset(page, per_page), per_page);
  if (!result) return db_error("deliveries", result.error(), reply);
  begin_page(reply.body, page, per_page, result->count);
  std::string& b = reply.body;
  for (std::size_t i = 0; i < result->items.size(); ++i) {
    const DeliveryRecord& d = result->items[i];
    if (i != 0) b.push_back(',');
    b += "{\"event_id\":";
    json::append_string(b, d.event_id);
    b += ",\"event_type\":";
    json::append_string(b, d.event_type);
    b += ",\"created_at\":";
    append_time(b, d.created_unix_ms);
    b += ",\"outcome\":";
    json::append_string(b, d.outcome ? to_string(*d.outcome) : "pending");
    b += ",\"finished_at\":";
    if (d.outcome) {
      append_time(b, d.finished_unix_ms);
    } else {
      b += "null";
    }
    b += ",\"next_attempt_at\":";
    if (!d.outcome && d.next_attempt_unix_ms > 0) {
      append_time(b, d.next_attempt_unix_ms);
    } else {
      b += "null";
    }
    b += ",\"attempts_made\":";
    json::append_int(b, d.attempts_made);
    b += d.resent ? ",\"resend\":true" : ",\"resend\":false";
    b += ",\"attempts\":[";
    for (std::size_t k = 0; k < d.attempts.size(); ++k) {
      const AttemptRecord& a = d.attempts[k];
      if (k != 0) b.push_back(',');
      b += "{\"attempt\":";
      json::append_int(b, a.n);
      b += ",\"at\":";
      append_time(b, a.at_unix_ms);
      b += ",\"status_code\":";
      if (a.status != 0) {
        json::append_int(b, a.status);
      } else {
        b += "null";
      }
      b += ",\"error\":";
      if (a.failure.empty()) {
        b += "null";
      } else {
        json::append_string(b, a.failure);
      }
      b += ",\"duration_ms\":";
      json::append_int(b, a.duration_us / 1000);
      b += '}';
    }
    b += "]}";
  }
  b += "]}";
}

bool Api::resend(const Caller& c, std::int64_t id, std::string_view event_id,
                 transport::HttpResponder responder, Reply& reply) {
  if (!visible_webhook(c, id, reply)) return false;
  auto r = deps_.engine->resend(id, event_id);
  if (!r) {
    db_error("resend", r.error(), reply);
    return false;
  }
  if (r->busy != 0) {
    set_error(reply, 503, "json", "fanoutd is busy; retry later");
    reply.headers.emplace_back("retry-after", std::to_string(deps_.config->ingest_retry_after_s));
    return false;
  }
  if (r->count == 0) {
    not_found(reply);
    return false;
  }
  reply.status = 202;
  reply.body = "{\"resent\":1,\"event_id\":";
  json::append_string(reply.body, event_id);
  reply.body += '}';
  return defer(r->seq, r->seq, responder, reply, "/v2/webhooks/{id}/deliveries/{event_id}/resend");
}

bool Api::recover(const Caller& c, std::int64_t id, const Query& q,
                  transport::HttpResponder responder, Reply& reply) {
  std::optional<std::int64_t> since;
  bool given = false;
  for (const auto& [name, value] : q) {
    if (name != "since") continue;
    given = true;
    since = parse_iso8601(value);
  }
  if (!since) {
    field_error(reply, "since",
                given ? "since must be an ISO 8601 time, e.g. 2024-11-27T16:10:44Z."
                      : "since is required (an ISO 8601 time, e.g. 2024-11-27T16:10:44Z).");
    return false;
  }
  if (!visible_webhook(c, id, reply)) return false;
  const std::uint64_t first = deps_.engine->last_seq() + 1;
  auto r = deps_.engine->recover(id, *since);
  if (!r) {
    db_error("recover", r.error(), reply);
    return false;
  }
  reply.status = r->busy != 0 ? 503 : 202;
  if (r->busy != 0) {
    reply.headers.emplace_back("retry-after", std::to_string(deps_.config->ingest_retry_after_s));
  }
  reply.body = "{\"recovered\":";
  json::append_int(reply.body, static_cast<std::int64_t>(r->count));
  reply.body += ",\"busy\":";
  json::append_int(reply.body, static_cast<std::int64_t>(r->busy));
  reply.body += '}';
  return defer(r->count != 0 ? first : 0, r->count != 0 ? r->seq : 0, responder, reply,
               "/v2/webhooks/{id}/recover");
}

}  // namespace fanout::daemon
