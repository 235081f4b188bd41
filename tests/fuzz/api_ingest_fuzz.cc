// Fuzz target: fanoutd's ingest, POST /v2/events (tools/fanoutd/api_ingest.cc): splitting the
// body into events (NDJSON lines, or one JSON event) and writing the answer, through
// api_detail::ingest_reply. Each event goes through the real envelope parser
// (routing::EnvelopeParser, as Producer::publish does); the engine's decisions after it are
// played by a model: organisations 42 and 43 subscribed, 44 allowed but not subscribed, others
// not allowed (org_not_allowed), an id seen before is a duplicate, and the engine turns busy after
// a number of accepted events the first byte chooses.
//
// The first byte: bit 0 application/x-ndjson (else application/json), bit 1 the daemon is
// stopping, bits 2-4 busy after that many accepted events (0: never), bit 5 max_events 3 (else
// 10,000). The rest is the body.
//
// Invariants, beyond "no crash, no sanitizer report":
//   - the answer is valid JSON; 400 exactly when the body holds no event or too many (counted
//     here independently of json::ndjson_lines), else 202, or 503 with Retry-After when busy;
//   - one item per event, line numbers increasing and within the body, each event handed to
//     publish is one line of the body without its line break;
//   - each item says what publish answered for its line (ids read back through the JSON
//     escaping), nothing is published after a busy answer or while stopping, and the counts
//     add up; the journal range covers exactly the sequences publish returned.
#include <simdjson.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routing/envelope.h"
#include "tests/fuzz/fuzz_check.h"
#include "tools/fanoutd/api_internal.h"

namespace {

using fanout::PublishResult;
using fanout::PublishStatus;
using fanout::daemon::Api;
namespace detail = fanout::daemon::api_detail;

struct Fixture {
  fanout::routing::EventCatalogue catalogue;
  fanout::routing::EnvelopeParser parser{catalogue};
  simdjson::dom::parser reference;
};

// What the model answered for one event.
struct Published {
  std::string_view line;
  PublishStatus status;
  std::string id;      // accepted, duplicate, dropped
  std::string reason;  // refused
};

// The events a body holds, counted without json::ndjson_lines: NDJSON lines with something
// other than spaces and tabs (after one trailing '\r'), or one event if the body is not blank.
std::size_t expected_events(std::string_view body, bool ndjson, std::size_t& newlines) {
  newlines = static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n'));
  if (!ndjson) return body.find_first_not_of(" \t\r\n") == std::string_view::npos ? 0 : 1;
  std::size_t n = 0;
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t end = body.find('\n', start);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) ++n;
    start = end + 1;
  }
  return n;
}

std::string_view status_name(PublishStatus s) {
  switch (s) {
    case PublishStatus::kAccepted:
      return "accepted";
    case PublishStatus::kDuplicate:
      return "duplicate";
    case PublishStatus::kNoSubscription:
      return "dropped";
    case PublishStatus::kInvalid:
      return "refused";
    case PublishStatus::kBusy:
    case PublishStatus::kStopped:
      return "busy";
  }
  return "?";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture* f = new Fixture;  // kept for the process, as the engine keeps its parsers
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool ndjson = (mode & 1) != 0;
  const bool stopping = (mode & 2) != 0;
  const std::size_t busy_after = (mode >> 2) & 7;
  const std::size_t max_events = (mode & 32) != 0 ? 3 : 10'000;

  // The model of the engine behind Producer::publish.
  std::vector<Published> calls;
  std::set<std::string> ids_seen;
  std::uint64_t next_seq = 100;
  std::uint64_t min_seq = 0, max_seq = 0;
  std::size_t accepted = 0;
  std::string generated;
  const detail::IngestPublish publish = [&](std::string_view line) {
    FUZZ_CHECK(line.data() >= body.data() && line.data() + line.size() <= body.data() + body.size(),
               "an event is bytes of the body");
    if (ndjson) FUZZ_CHECK(line.find('\n') == std::string_view::npos, "an event is one line");
    PublishResult r;
    const auto env = f->parser.parse(line);
    if (!env) {
      r.status = PublishStatus::kInvalid;
      r.reason = fanout::routing::reason_code(env.error());
    } else if (env->org_id < 42 || env->org_id > 44) {
      r.status = PublishStatus::kInvalid;
      r.reason = "org_not_allowed";
    } else if (env->org_id == 44) {
      r.status = PublishStatus::kNoSubscription;
      r.event_id = env->id;
    } else if (busy_after != 0 && accepted == busy_after) {
      r.status = PublishStatus::kBusy;
    } else if (!env->id.empty() && ids_seen.count(std::string(env->id)) != 0) {
      r.status = PublishStatus::kDuplicate;
      r.event_id = env->id;
      r.seq = 100;  // the original's
    } else {
      ++accepted;
      r.status = PublishStatus::kAccepted;
      r.seq = next_seq++;
      if (env->id.empty()) {
        char hex[40];
        std::snprintf(hex, sizeof hex, "%032llx", static_cast<unsigned long long>(r.seq));
        generated = hex;
        r.event_id = generated;
      } else {
        ids_seen.emplace(env->id);
        r.event_id = env->id;
      }
    }
    if (r.seq != 0) {
      min_seq = min_seq == 0 ? r.seq : std::min(min_seq, r.seq);
      max_seq = std::max(max_seq, r.seq);
    }
    calls.push_back({line, r.status, std::string(r.event_id), std::string(r.reason)});
    return r;
  };

  Api::Reply reply;
  std::uint64_t first_seq = 0, last_seq = 0;
  detail::ingest_reply(body, ndjson, max_events, 7, stopping, publish, reply, first_seq, last_seq);

  std::size_t newlines = 0;
  const std::size_t events = expected_events(body, ndjson, newlines);
  simdjson::dom::element root;
  FUZZ_CHECK(!f->reference.parse(reply.body).get(root), "the answer is valid JSON");
  if (events == 0 || events > max_events) {
    FUZZ_CHECK(reply.status == 400 && calls.empty(),
               "no event or too many: 400, nothing published");
    std::string_view message;
    FUZZ_CHECK(!root["error"]["json"]["_schema"].get_string().get(message), "Partoo's 400 shape");
    return 0;
  }
  FUZZ_CHECK(reply.status == 202 || reply.status == 503, "202 or 503");
  simdjson::dom::array items;
  FUZZ_CHECK(!root["items"].get_array().get(items), "items");
  FUZZ_CHECK(items.size() == events, "one item per event");
  std::uint64_t counts[5] = {};
  const char* const kCounts[5] = {"accepted", "dropped", "refused", "busy", "duplicate"};
  for (int i = 0; i < 5; ++i) {
    FUZZ_CHECK(!root[kCounts[i]].get_uint64().get(counts[i]), "the counts");
  }
  FUZZ_CHECK(counts[0] + counts[1] + counts[2] + counts[3] + counts[4] == events,
             "the counts add up");
  FUZZ_CHECK((reply.status == 503) == (counts[3] != 0), "503 exactly when busy");
  FUZZ_CHECK((reply.headers.size() == 1 && reply.headers[0].first == "retry-after" &&
              reply.headers[0].second == "7") == (counts[3] != 0),
             "Retry-After exactly when busy");
  if (stopping) FUZZ_CHECK(calls.empty() && counts[3] == events, "stopping: all busy");

  std::uint64_t previous_line = 0;
  std::size_t i = 0;
  bool busy_seen = false;
  for (simdjson::dom::element item : items) {
    std::uint64_t line = 0;
    std::string_view status;
    FUZZ_CHECK(!item["line"].get_uint64().get(line), "an item has its line");
    FUZZ_CHECK(line > previous_line && line <= newlines + 1, "lines increase within the body");
    previous_line = line;
    FUZZ_CHECK(!item["status"].get_string().get(status), "an item has its status");
    if (i >= calls.size()) {
      FUZZ_CHECK(status == "busy" && (busy_seen || stopping), "unpublished events are busy");
    } else {
      const Published& p = calls[i];
      FUZZ_CHECK(!busy_seen, "nothing published after a busy answer");
      FUZZ_CHECK(status == status_name(p.status), "the item says what publish answered");
      busy_seen = p.status == PublishStatus::kBusy || p.status == PublishStatus::kStopped;
      std::string_view id, reason;
      if (p.status == PublishStatus::kInvalid) {
        FUZZ_CHECK(!item["reason"].get_string().get(reason) && reason == p.reason, "the reason");
      } else if (!p.id.empty()) {
        FUZZ_CHECK(!item["id"].get_string().get(id) && id == p.id, "the id, escaped and read back");
      }
    }
    ++i;
  }
  FUZZ_CHECK(first_seq <= last_seq && last_seq == max_seq, "the journal range's end");
  FUZZ_CHECK(first_seq == 0 || first_seq >= min_seq, "the journal range's start");
  return 0;
}
