// fanoutd publish: NDJSON from a file or stdin to a running daemon's POST /v2/events, in
// batches, over HTTP/1.1; busy lines are sent again.
#include <uv.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <simdjson.h>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "fanout/version.h"
#include "routing/subscription.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/dir_lock.h"
#include "tools/fanoutd/limits.h"
#include "tools/fanoutd/log.h"
#include "tools/fanoutd/metrics.h"
#include "tools/fanoutd/redis.h"
#include "tools/fanoutd/store.h"
#include "tools/fanoutd/sync.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"
#include "transport/tls.h"

#include "tools/fanoutd/commands.h"

namespace fanout::daemon {
namespace {

// One POST to the daemon, run to completion on a private loop.
class Post final : public transport::Request {
 public:
  void on_response(const transport::Response& r) override {
    done = true;
    failure = r.failure;
    status = r.status;
    detail = std::string(r.detail);
    answer = std::string(r.body);
  }
  bool done = false;
  transport::Failure failure = transport::Failure::kNone;
  int status = 0;
  std::string detail, answer, key_header;
};

// The command line of `publish` (flags, else FANOUTD_URL and FANOUTD_KEY).
struct PublishArgs {
  std::string key;
  routing::UrlParts parts;
  std::size_t batch = 500;
  std::uint64_t max_wait_s = 300;
  const std::string* file = nullptr;  // nullptr: standard input
};

// The arguments into `a`; the exit status of a usage error otherwise.
std::optional<int> publish_args(const Flags& flags, PublishArgs& a) {
  const std::string* url = flags.get("url");
  const std::string* key = flags.get("key");
  const char* env_url = std::getenv("FANOUTD_URL");
  const char* env_key = std::getenv("FANOUTD_KEY");
  const std::string url_s = url != nullptr ? *url : env_url != nullptr ? env_url : "";
  a.key = key != nullptr ? *key : env_key != nullptr ? env_key : "";
  if (url_s.empty()) return usage_error("publish: --url http://HOST:PORT is required");
  if (a.key.empty()) return usage_error("publish: --key INGEST_KEY is required");
  if (flags.positional.size() > 1) return usage_error("publish: at most one FILE");
  auto parts = routing::validate_url(url_s, {.allow_insecure_http = true});
  if (!parts) return usage_error("publish: --url: " + parts.error().front().message);
  a.parts = std::move(*parts);
  if (const std::string* b = flags.get("batch")) {
    a.batch = static_cast<std::size_t>(std::strtoull(b->c_str(), nullptr, 10));
    if (a.batch == 0 || a.batch > 10'000) return usage_error("publish: --batch must be 1..10000");
  }
  if (const std::string* w = flags.get("max-wait-s"))
    a.max_wait_s = std::strtoull(w->c_str(), nullptr, 10);
  if (!flags.positional.empty()) a.file = &flags.positional[0];
  return std::nullopt;
}

// The whole input (FILE or standard input) into `text`; false after printing why not.
bool read_input(const std::string* file, std::string& text) {
  const bool from_stdin = file == nullptr;
  std::FILE* in = from_stdin ? stdin : std::fopen(file->c_str(), "rb");
  if (in == nullptr) {
    std::fprintf(stderr, "fanoutd: publish: cannot read %s: %s\n", file->c_str(),
                 std::strerror(errno));
    return false;
  }
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) text.append(buf, n);
  const bool failed = std::ferror(in) != 0;
  if (!from_stdin) std::fclose(in);
  if (failed) {
    std::fprintf(stderr, "fanoutd: publish: read error on %s\n",
                 from_stdin ? "standard input" : file->c_str());
    return false;
  }
  return true;
}

struct Counts {
  std::size_t accepted = 0, dropped = 0, refused = 0, duplicate = 0;
};

using Lines = std::vector<std::pair<std::size_t, std::string_view>>;

// The items of one answer, for lines [next, end): printed and counted. Returns the first busy
// line (`end` when none was busy).
std::size_t read_items(simdjson::dom::array items, const Lines& lines, std::size_t next,
                       std::size_t end, Counts& n) {
  std::size_t i = next;
  for (simdjson::dom::element item : items) {
    if (i >= end) break;
    auto field = [&item](const char* name) {
      std::string_view v;
      if (item[name].get_string().get(v) != simdjson::SUCCESS) return std::string_view();
      return v;
    };
    const std::string_view status = field("status"), id = field("id"), reason = field("reason");
    if (status == "accepted") {
      ++n.accepted;
      std::printf("accepted %.*s\n", static_cast<int>(id.size()), id.data());
    } else if (status == "dropped") {
      ++n.dropped;
      std::printf("dropped %.*s %.*s\n", static_cast<int>(id.size()), id.data(),
                  static_cast<int>(reason.size()), reason.data());
    } else if (status == "duplicate") {
      ++n.duplicate;
      std::printf("duplicate %.*s\n", static_cast<int>(id.size()), id.data());
    } else if (status == "refused") {
      ++n.refused;
      std::printf("refused %zu %.*s\n", lines[i].first, static_cast<int>(reason.size()),
                  reason.data());
    } else {
      return i;
    }
    ++i;
  }
  return end;
}

// Waits one second on the loop (the daemon's default Retry-After).
void wait_a_second(uv_loop_t* loop) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  bool fired = false;
  t.data = &fired;
  uv_timer_start(
      &t, [](uv_timer_t* tt) { *static_cast<bool*>(tt->data) = true; }, 1000, 0);
  while (!fired) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
}

// POSTs one batch and waits for its answer; false after printing why it failed.
bool post_batch(transport::Client& client, uv_loop_t* loop, const PublishArgs& a,
                std::string_view body, Post& post) {
  const transport::HeaderView h[] = {{"x-APIKey", a.key, true}};
  post.tls = a.parts.scheme == routing::Scheme::kHttps;
  post.host = a.parts.host;
  post.port = a.parts.port;
  post.target = "/v2/events";
  post.headers = h;
  post.body = body;
  post.content_type = "application/x-ndjson";
  client.submit(post);
  while (!post.done) uv_run(loop, UV_RUN_ONCE);
  if (post.failure != transport::Failure::kNone) {
    std::fprintf(stderr, "fanoutd: publish: %s: %s\n",
                 std::string(transport::to_string(post.failure)).c_str(), post.detail.c_str());
    return false;
  }
  if (post.status != 202 && post.status != 503) {
    std::fprintf(stderr, "fanoutd: publish: the daemon answered %d: %s\n", post.status,
                 post.answer.c_str());
    return false;
  }
  return true;
}

// Every line in batches, busy ones again after a second (up to --max-wait-s); the exit status.
int publish_lines(transport::Client& client, uv_loop_t* loop, const PublishArgs& a,
                  const Lines& lines, Counts& n) {
  std::uint64_t waited_s = 0;
  simdjson::dom::parser parser;
  std::size_t next = 0;
  while (next < lines.size()) {
    const std::size_t end = std::min(lines.size(), next + a.batch);
    std::string body;
    for (std::size_t i = next; i < end; ++i) body.append(lines[i].second).push_back('\n');
    Post post;
    if (!post_batch(client, loop, a, body, post)) return 1;
    simdjson::padded_string padded(post.answer);
    simdjson::dom::element root;
    simdjson::dom::array items;
    if (parser.parse(padded).get(root) || root["items"].get_array().get(items)) {
      std::fprintf(stderr, "fanoutd: publish: unreadable answer (%zu bytes)\n", post.answer.size());
      return 1;
    }
    const std::size_t first_busy = read_items(items, lines, next, end, n);
    next = first_busy;
    if (first_busy < end) {
      if (waited_s >= a.max_wait_s) {
        std::fprintf(stderr, "fanoutd: publish: still busy after %llu s; %zu events not sent\n",
                     static_cast<unsigned long long>(waited_s), lines.size() - next);
        return 1;
      }
      // Wait as told by Retry-After (the daemon says 1 s by default) on the loop.
      wait_a_second(loop);
      ++waited_s;
    }
  }
  return 0;
}

}  // namespace

int cmd_publish(std::span<char*> args) {
  auto flags = parse_flags(args, {"url", "key", "batch", "max-wait-s"});
  if (!flags) return usage_error("publish: " + flags.error());
  PublishArgs a;
  if (const std::optional<int> rc = publish_args(*flags, a)) return *rc;
  std::string text;
  if (!read_input(a.file, text)) return 1;
  // Non-blank lines with their 1-based line numbers in the input.
  const auto lines = json::ndjson_lines(text);

  std::signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  transport::StreamLoop streams(&loop);
  transport::LoopTimer timers(&loop);
  transport::ClientOptions co;
  co.insecure = a.parts.scheme == routing::Scheme::kHttp;
  co.cleartext_h2 = false;  // HTTP/1.1: one request at a time, nothing to multiplex
  // The target is the operator's own daemon, usually on loopback: no address guard.
  co.allow = {*transport::Subnet::parse("0.0.0.0/0"), *transport::Subnet::parse("::/0")};
  co.user_agent = "fanoutd-publish/" + std::string(version());
  co.response_timeout_ms = 60'000;
  auto client = transport::Client::create(streams, timers, co);
  if (!client) {
    std::fprintf(stderr, "fanoutd: publish: %s\n", client.error().c_str());
    return 1;
  }
  Counts n;
  int rc = publish_lines(**client, &loop, a, lines, n);
  std::printf("published: accepted=%zu dropped=%zu refused=%zu duplicate=%zu\n", n.accepted,
              n.dropped, n.refused, n.duplicate);
  std::fflush(stdout);
  (*client)->close([](void*) {}, nullptr);
  timers.close();
  streams.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  client->reset();
  (void)uv_loop_close(&loop);
  if (rc == 0 && n.refused > 0) rc = 1;
  return rc;
}

}  // namespace fanout::daemon
