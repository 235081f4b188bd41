// fanoutd's ingest route, POST /v2/events, and the answers that wait for the journal.
//
// With durability on (the default), an answer that says `accepted` (or `duplicate`) leaves only
// once every event it names is on disk: the request's events were given journal sequences
// [first, last]; the answer waits in `waiting_` (FIFO: sequences only grow) until the journal's
// durable sequence reaches `last`. A group commit that failed makes every waiting answer whose
// range meets it a 503 instead (nothing it names is promised; the events were forgotten by the
// idempotency check, so the client may send the batch again whole).
#include <uv.h>

#include <algorithm>

#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/log.h"

namespace fanout::daemon {

using namespace api_detail;
using transport::HttpRequest;
using transport::HttpResponder;

namespace {

struct IngestCounts {
  std::size_t accepted = 0, dropped = 0, refused = 0, busy = 0, duplicate = 0;
};

// Ends a line's item: `head` (its status and the name of one more field), that field's value as
// a JSON string, the closing brace.
void end_item(std::string& items, std::string_view head, std::string_view value) {
  items += head;
  json::append_string(items, value);
  items += '}';
}

// One line's item in the answer (after its "{\"line\":N"), counted in `n`; `stop` becomes true
// when the engine is at its global budget or stopping: the lines after it are not published.
void append_result(std::string& items, const PublishResult& r, IngestCounts& n, bool& stop) {
  switch (r.status) {
    case PublishStatus::kAccepted:
      ++n.accepted;
      end_item(items, R"(,"status":"accepted","id":)", r.event_id);
      break;
    case PublishStatus::kDuplicate:
      ++n.duplicate;
      end_item(items, R"(,"status":"duplicate","id":)", r.event_id);
      break;
    case PublishStatus::kNoSubscription:
      ++n.dropped;
      if (r.event_id.empty()) {
        items += R"(,"status":"dropped","reason":"no_subscription"})";
      } else {
        end_item(items, R"(,"status":"dropped","reason":"no_subscription","id":)", r.event_id);
      }
      break;
    case PublishStatus::kInvalid:
      ++n.refused;
      end_item(items, R"(,"status":"refused","reason":)", r.reason);
      break;
    case PublishStatus::kBusy:
    case PublishStatus::kStopped:
      ++n.busy;
      if (r.status == PublishStatus::kBusy &&
          (r.reason == "org_busy" || r.reason == "origin_busy")) {
        // One organisation's or origin's budget: the other lines may still go in.
        end_item(items, R"(,"status":"busy","reason":)", r.reason);
        break;
      }
      stop = true;
      items += R"(,"status":"busy"})";
      break;
  }
}

}  // namespace

namespace api_detail {

void ingest_reply(std::string_view body, bool ndjson, std::size_t max_events,
                  std::uint32_t retry_after_s, bool stopping, const IngestPublish& publish,
                  Api::Reply& reply, std::uint64_t& first_seq, std::uint64_t& last_seq) {
  first_seq = last_seq = 0;
  // Lines: (1-based number, bytes). application/json is one event whatever its layout.
  std::vector<std::pair<std::size_t, std::string_view>> lines;
  if (ndjson) {
    lines = json::ndjson_lines(body);
  } else if (body.find_first_not_of(" \t\r\n") != std::string_view::npos) {
    lines.emplace_back(1, body);
  }
  if (lines.empty()) return field_error(reply, "_schema", "the body holds no event.");
  if (lines.size() > max_events) {
    return field_error(reply, "_schema",
                       "at most " + std::to_string(max_events) + " events per request (got " +
                           std::to_string(lines.size()) + ").");
  }
  IngestCounts n;
  std::string items;
  items.reserve(lines.size() * 48);
  bool stop = stopping;
  for (const auto& [number, line] : lines) {
    if (!items.empty()) items.push_back(',');
    items += "{\"line\":";
    json::append_int(items, static_cast<std::int64_t>(number));
    if (stop) {
      items += R"(,"status":"busy"})";
      ++n.busy;
      continue;
    }
    const PublishResult r = publish(line);
    if (r.seq != 0) {
      if (first_seq == 0) first_seq = r.seq;
      last_seq = std::max(last_seq, r.seq);
    }
    append_result(items, r, n, stop);
  }
  reply.status = n.busy == 0 ? 202 : 503;
  if (n.busy != 0) reply.headers.emplace_back("retry-after", std::to_string(retry_after_s));
  reply.body = "{\"accepted\":" + std::to_string(n.accepted) +
               ",\"dropped\":" + std::to_string(n.dropped) +
               ",\"refused\":" + std::to_string(n.refused) + ",\"busy\":" + std::to_string(n.busy) +
               ",\"duplicate\":" + std::to_string(n.duplicate) + ",\"items\":[" + items + "]}";
}

}  // namespace api_detail

bool Api::ingest(const HttpRequest& req, const ApiKey& key, HttpResponder responder, Reply& reply) {
  const bool ndjson = iequals(media_type(req.header("content-type")), "application/x-ndjson");
  // A scoped INGEST key publishes for its organisations only (refused: org_not_allowed).
  PublishOptions publish_options;
  publish_options.allowed_orgs = key.orgs;
  const auto publish = [&](std::string_view line) {
    PublishResult r = producer_.publish(line, publish_options);
    switch (r.status) {
      case PublishStatus::kAccepted:
        // Remember the payload for tryouts (the engine's parse hands it back): one lookup, and
        // the kept string's capacity reused (no allocation per event once it is large enough).
        if (const auto it = latest_.find({r.org_id, r.type}); it != latest_.end()) {
          it->second.assign(r.payload);
        } else if (latest_.size() < kMaxLatest) {
          latest_.emplace(std::pair{r.org_id, r.type}, std::string(r.payload));
        }
        break;
      case PublishStatus::kDuplicate:
        deps_.metrics->record_refused("duplicate");
        break;
      case PublishStatus::kNoSubscription:
        deps_.metrics->record_refused("no_subscription");
        break;
      case PublishStatus::kInvalid:
        deps_.metrics->record_refused(r.reason);
        break;
      case PublishStatus::kBusy:
      case PublishStatus::kStopped:
        deps_.metrics->record_refused(r.status == PublishStatus::kStopped ? "stopped"
                                      : r.reason.empty()                  ? "busy"
                                                                          : r.reason);
        break;
    }
    return r;
  };
  std::uint64_t first_seq = 0, last_seq = 0;  // journal sequences this answer promises
  // One group commit for the request's events (the answer waits for all of them anyway).
  const Producer::Batch batch(producer_);
  ingest_reply(req.body, ndjson, deps_.config->ingest_max_events,
               deps_.config->ingest_retry_after_s, stopping_, publish, reply, first_seq, last_seq);
  return !defer(first_seq, last_seq, responder, reply, "/v2/events");
}

bool Api::defer(std::uint64_t first_seq, std::uint64_t last_seq, HttpResponder responder,
                Reply& reply, std::string_view route) {
  if (last_seq == 0 || deps_.engine->durable_seq() >= last_seq) return false;
  waiting_.push_back({first_seq, last_seq, responder, std::move(reply), route});
  return true;
}

void Api::note_commit(std::uint64_t first_seq, std::uint64_t last_seq, bool ok) {
  if (ok) return;
  std::lock_guard lock(failed_mu_);
  failed_.emplace_back(first_seq, last_seq);
}

void Api::on_journal_commit() {
  const std::uint64_t durable = deps_.engine->durable_seq();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> failed;
  {
    std::lock_guard lock(failed_mu_);
    failed = failed_;
  }
  while (!waiting_.empty()) {
    Waiting& w = waiting_.front();
    bool lost = false;
    for (const auto& [lo, hi] : failed) {
      if (lo <= w.last_seq && w.first_seq <= hi) lost = true;
    }
    if (!lost && w.last_seq > durable) break;
    if (lost) {
      Reply r;
      set_error(r, 503, "json",
                "the events could not be written to disk; nothing in this request was accepted: "
                "send it again");
      r.headers.emplace_back("retry-after", std::to_string(deps_.config->ingest_retry_after_s));
      log::error("journal commit failed", {{"route", std::string(w.route)}});
      w.reply = std::move(r);
    }
    answer_later(w.responder, w.reply, "POST", w.route);
    waiting_.pop_front();
  }
  // A failed range no waiting answer can meet any more is forgotten.
  if (waiting_.empty() && !failed.empty()) {
    std::lock_guard lock(failed_mu_);
    std::erase_if(failed_, [&](const auto& f) { return f.second <= durable; });
  }
}

}  // namespace fanout::daemon
