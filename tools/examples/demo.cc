// fanout-demo (tools/examples/demo.cc): the older offline demo, end to end on one thread.
//
// Validates subscription requests (Partoo's rules), loads a routing table, then takes events
// (an embedded sample, or NDJSON from --events) through the hot path: parse the envelope, route
// (org_id, type) to its subscription, build the delivery body. Prints what would be POSTed where,
// why anything was refused or dropped, and the hot path's rate. Last, unless --no-delivery, the
// engine delivers the sample for real to a local fanout-sink (started from beside this program,
// answering 200 three times in four and 503 otherwise) and prints each event's outcome.
//
//   fanout-demo [--subscriptions N] [--events FILE|-] [--quiet] [--no-delivery]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fanout/engine.h"
#include "fanout/version.h"
#include "routing/catalogue.h"
#include "routing/envelope.h"
#include "routing/routing_table.h"
#include "routing/subscription.h"
#include "tools/common/json_out.h"

namespace {

using namespace fanout::routing;

struct Options {
  std::size_t subscriptions = 100'000;
  std::string events_file;
  bool quiet = false;
  bool delivery = true;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "fanout-demo: %s\n"
               "usage: fanout-demo [--subscriptions N] [--events FILE|-] [--quiet]\n"
               "  --subscriptions N  generated subscriptions loaded beside the demo ones "
               "(default 100000)\n"
               "  --events FILE      newline-delimited event JSON to route ('-' for stdin); "
               "default: an embedded sample\n"
               "  --quiet            print only the summary\n"
               "  --no-delivery      skip the real delivery to a local fanout-sink\n",
               why);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage("missing value after an option");
      return argv[++i];
    };
    if (a == "--subscriptions") {
      const std::string v(value());
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n > 50'000'000) usage("--subscriptions takes 0..50000000");
      o.subscriptions = static_cast<std::size_t>(n);
    } else if (a == "--events") {
      o.events_file = std::string(value());
    } else if (a == "--quiet") {
      o.quiet = true;
    } else if (a == "--no-delivery") {
      o.delivery = false;
    } else if (a == "--help" || a == "-h") {
      usage("help");
    } else {
      usage("unknown option");
    }
  }
  return o;
}

// What an operator of organisation 42 asks for through the API: the first two are valid; the
// others each break a rule of Partoo's documentation.
std::vector<SubscriptionSpec> demo_requests() {
  return {
      {42,
       "business_updated",
       "https://hooks.example.com/partoo?source=fanout",
       {{"X-Auth-Token", "s3cr3t"}, {"X-Tenant", "acme"}}},
      {42, "message_created", "https://hooks.example.com/partoo", {}},
      {42, "lead_received", "http://hooks.example.com/partoo", {}},
      {42,
       "business_created",
       "https://hooks.example.com/partoo",
       {{"X-Partoo-Signature-v1", "forged"}, {"Authorization", "Bearer x"}}},
      {42, "review_created", "https://user:pw@hooks.example.com/", {{"X-Bad Key", "v"}}},
  };
}

// The rest of org 42's subscriptions, all valid.
std::vector<SubscriptionSpec> demo_more() {
  return {
      {42, "business_created", "https://hooks.example.com/partoo", {}},
      {42, "business_deleted", "https://hooks.example.com/partoo", {}},
      {42, "message_updated", "https://hooks.example.com/partoo", {}},
      {42, "lead_received", "https://crm.example.org/webhooks/partoo", {{"X-Api-Key", "k-123"}}},
  };
}

const char* const kSampleEvents[] = {
    R"({"id":"evt-1","org_id":42,"type":"business_created","payload":{"business":{"id":"5f1b2c","name":"Boulangerie Dupont","city":"Lyon","zipcode":"69002","country":"FR"}}})",
    R"({"id":"evt-2","org_id":42,"type":"business_updated","payload":{"business":{"id":"5f1b2c","name":"Boulangerie Dupont & Fils"},"updated_fields":["name"]}})",
    R"({"id":"evt-3","org_id":42,"type":"business_deleted","payload":{"business":{"id":"5f1b2c"}}})",
    R"({"id":"evt-4","org_id":42,"type":"message_created","payload":{"conversation_id":981,"message":{"id":77120,"content":"Bonjour ! Êtes-vous ouverts dimanche ? 🥐","is_automated":false}}})",
    R"({"id":"evt-5","org_id":42,"type":"message_updated","payload":{"conversation_id":981,"message":{"id":77120,"status":"read"}}})",
    R"({"id":"evt-6","org_id":42,"type":"lead_received","payload":{"lead":{"name":"Camille Martin","email":"camille@example.fr","phone":"+33 6 12 34 56 78","source":"website"}}})",
    R"({"id":"evt-7","org_id":7,"type":"business_updated","payload":{"business":{"id":"a1"}}})",
    R"({"org_id":42,"type":"review_created","payload":{}})",
    R"({"org_id":42,"type":"business_updated","payload":"not an object"})",
    R"({"org_id":"42","type":"business_updated","payload":{}})",
    R"({"org_id":42,"type":"business_updated","payload":{"business":{"id":"5f1b2c")",
};

// Partoo's error shape: {"error":{"json":{"<field>":"<message>"}}}, messages of one field joined.
std::string partoo_error(const std::vector<Violation>& violations) {
  std::string out = R"({"error":{"json":{)";
  for (std::size_t i = 0; i < violations.size();) {
    std::string message = violations[i].message;
    std::size_t j = i + 1;
    for (; j < violations.size() && violations[j].field == violations[i].field; ++j) {
      message += "; " + violations[j].message;
    }
    if (i != 0) out += ',';
    fanout::json::append_key(out, violations[i].field);
    fanout::json::append_string(out, message);
    i = j;
  }
  return out + "}}}";
}

std::vector<std::string> read_events(const std::string& file) {
  std::vector<std::string> events;
  if (file.empty()) {
    for (const char* e : kSampleEvents) events.emplace_back(e);
    return events;
  }
  std::ifstream in;
  std::istream* src = &std::cin;
  if (file != "-") {
    in.open(file);
    if (!in) {
      std::fprintf(stderr, "fanout-demo: cannot open %s: %s\n", file.c_str(), std::strerror(errno));
      std::exit(1);
    }
    src = &in;
  }
  for (std::string line; std::getline(*src, line);) {
    if (!line.empty()) events.push_back(std::move(line));
  }
  return events;
}

// Keeps the outcomes; the main thread waits for them on a condition variable.
class Outcomes final : public fanout::Observer {
 public:
  void on_outcomes(std::span<const fanout::Outcome> batch) noexcept override {
    std::lock_guard lock(mu_);
    for (const fanout::Outcome& o : batch) {
      char line[256];
      std::snprintf(line, sizeof line, "  %-9s %-6.*s %-16.*s after %u attempt(s), last HTTP %d",
                    std::string(fanout::to_string(o.kind)).c_str(),
                    static_cast<int>(o.event_id.size()), o.event_id.data(),
                    static_cast<int>(o.event_type.size()), o.event_type.data(), o.attempts,
                    o.last_status);
      lines_.emplace_back(line);
      ++by_kind_[static_cast<std::size_t>(o.kind)];
    }
    cv_.notify_all();
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return lines_.size() >= n; });
  }
  std::vector<std::string> lines_;
  std::size_t by_kind_[4] = {};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

// fanout-sink from the directory this program runs from, or empty.
std::string sibling_sink() {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return {};
  std::string dir(self, static_cast<std::size_t>(n));
  dir.resize(dir.rfind('/') + 1);
  const std::string sink = dir + "fanout-sink";
  return access(sink.c_str(), X_OK) == 0 ? sink : std::string();
}

// Section 5: the engine delivers the sample events to a local fanout-sink for real.
void deliver_for_real(const std::vector<std::string>& events, bool quiet) {
  const std::string sink = sibling_sink();
  if (sink.empty()) {
    std::puts("\ndelivery: skipped (fanout-sink is not built beside fanout-demo)");
    return;
  }
  int out[2];
  if (pipe(out) != 0) return;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execl(sink.c_str(), sink.c_str(), "--listen", "127.0.0.1:0", "--status-mix", "200:3,503:1",
          "--seed", "7", "--json", "--quiet", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* from_sink = fdopen(out[0], "r");
  char first[256] = {};
  unsigned port = 0;
  if (from_sink == nullptr || std::fgets(first, sizeof first, from_sink) == nullptr ||
      std::sscanf(first, "listening on 127.0.0.1:%u", &port) != 1) {
    std::puts("\ndelivery: skipped (fanout-sink did not start)");
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    if (from_sink != nullptr) std::fclose(from_sink);
    return;
  }

  Outcomes outcomes;
  fanout::EngineOptions eo;
  eo.workers = 1;
  eo.insecure = true;                   // http:// to the local sink: demo and tests only
  eo.allow_subnets = {"127.0.0.1/32"};  // the address guard refuses loopback otherwise
  eo.retry.base_ms = 100;               // the contract's 30 s, shortened for the demo
  eo.retry.jitter = 0;
  auto engine = fanout::Engine::create(eo, &outcomes);
  std::size_t accepted = 0;
  if (engine) {
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/partoo";
    const EventCatalogue& catalogue = (*engine)->catalogue();
    for (EventTypeId t = 0; t < catalogue.size(); ++t) {
      SubscriptionSpec spec{42, std::string(catalogue.name(t)), url, {{"X-Demo", "fanout"}}};
      (void)(*engine)->upsert(t + 1, spec);
    }
    if ((*engine)->start()) {
      auto producer = (*engine)->make_producer();
      for (const std::string& e : events) {
        if (producer.publish(e).status == fanout::PublishStatus::kAccepted) ++accepted;
      }
      outcomes.wait_for(accepted);
    }
    (void)(*engine)->stop(std::chrono::seconds(2));
  }
  kill(pid, SIGTERM);
  std::string summary;
  char buf[512];
  while (std::fgets(buf, sizeof buf, from_sink) != nullptr) summary += buf;
  std::fclose(from_sink);
  waitpid(pid, nullptr, 0);
  if (!quiet) {
    std::printf(
        "\ndelivery through the engine to fanout-sink on 127.0.0.1:%u (200 three times "
        "in four, else 503; retries after 100 ms, 200 ms, ...):\n",
        port);
    for (const std::string& l : outcomes.lines_) std::puts(l.c_str());
    std::printf("  the sink counted: %s", summary.c_str());
  }
  std::printf("delivery: accepted=%zu delivered=%zu rejected=%zu exhausted=%zu dropped=%zu\n",
              accepted, outcomes.by_kind_[0], outcomes.by_kind_[1], outcomes.by_kind_[2],
              outcomes.by_kind_[3]);
}

// Prints a line unless --quiet.
struct Say {
  bool quiet = false;
  void operator()(const std::string& line) const {
    if (!quiet) std::puts(line.c_str());
  }
};

// 1. Validation, as the management API will do it: the subscriptions accepted (the requests
// shown, then the demo's other ones); nullopt, after a message, when a built-in one is refused.
std::optional<std::vector<Subscription>> validate_requests(const EventCatalogue& catalogue,
                                                           const Say& say) {
  say("\nsubscription requests for org 42 (docs/webhook-contract.md section 1):");
  std::vector<Subscription> accepted;
  for (const SubscriptionSpec& spec : demo_requests()) {
    auto r = validate(spec, catalogue);
    if (r) {
      say("  200  " + spec.event_type + " -> " + spec.url);
      accepted.push_back(std::move(*r));
    } else {
      say("  400  " + spec.event_type + " -> " + spec.url + "\n       " + partoo_error(r.error()));
    }
  }
  for (const SubscriptionSpec& spec : demo_more()) {
    auto r = validate(spec, catalogue);
    if (!r) {
      std::fprintf(stderr, "fanout-demo: built-in subscription refused: %s\n",
                   partoo_error(r.error()).c_str());
      return std::nullopt;
    }
    accepted.push_back(std::move(*r));
  }
  return accepted;
}

// 2. The routing table: the demo subscriptions plus `generated` tenants (org ids from 1000).
void load_table(RoutingTable& table, std::vector<Subscription>& accepted, std::size_t generated,
                const EventCatalogue& catalogue, const Say& say) {
  std::vector<Subscription> all;
  all.reserve(generated + accepted.size());
  for (std::size_t i = 0; i < generated; ++i) {
    Subscription s;
    s.id = static_cast<std::int64_t>(i + 1000);
    s.org_id = static_cast<std::int64_t>(1000 + i / catalogue.size());
    s.event_type = static_cast<EventTypeId>(i % catalogue.size());
    s.url = "https://tenant" + std::to_string(s.org_id) + ".example.net/hooks";
    s.parts = UrlParts{Scheme::kHttps, "tenant" + std::to_string(s.org_id) + ".example.net", 443,
                       "/hooks"};
    all.push_back(std::move(s));
  }
  std::int64_t next_id = 1;
  for (Subscription& s : accepted) {
    s.id = next_id++;
    all.push_back(s);
  }
  const auto t0 = std::chrono::steady_clock::now();
  table.load(std::move(all));
  const auto load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char line[256];
  std::snprintf(line, sizeof line, "\nrouting table: %zu subscriptions loaded in %.1f ms",
                table.stats().subscriptions, load_ms);
  say(line);
}

// 3. Events through the hot path: what would be POSTed where, and why anything was not.
void route_events(const std::vector<std::string>& events, EnvelopeParser& parser,
                  RoutingTable::Reader& reader, const EventCatalogue& catalogue, const Say& say) {
  say("\nevents:");
  std::size_t routed = 0, dropped = 0, refused = 0;
  std::string body;
  for (const std::string& event : events) {
    auto env = parser.parse(event);
    if (!env) {
      ++refused;
      say("  REFUSED  " + std::string(reason_code(env.error())) + ": " +
          std::string(to_string(env.error())));
      continue;
    }
    const std::string_view type = catalogue.name(env->type);
    auto pin = reader.pin();
    const Subscription* sub = pin.find(env->org_id, env->type);
    if (sub == nullptr) {
      ++dropped;
      say("  DROPPED  org " + std::to_string(env->org_id) + " " + std::string(type) +
          ": no subscription");
      continue;
    }
    ++routed;
    body = build_delivery_body(type, env->payload);
    std::string headers;
    for (const Header& h : sub->custom_headers) headers += " " + h.name + ": " + h.value + ";";
    say("  POST     " + sub->url + "  (event " + std::string(env->id) + ")" + headers + "\n" +
        "           " + body);
  }
  std::printf("\nsummary: routed=%zu dropped=%zu refused=%zu\n", routed, dropped, refused);
}

// 4. The hot path's rate on this thread: parse + route + build body, over the sample events.
void hot_path_rate(EnvelopeParser& parser, RoutingTable::Reader& reader,
                   const EventCatalogue& catalogue) {
  const std::vector<std::string> sample = read_events("");
  constexpr std::size_t kRounds = 20'000;
  std::size_t sink = 0;
  std::string body;
  const auto t1 = std::chrono::steady_clock::now();
  for (std::size_t round = 0; round < kRounds; ++round) {
    for (const std::string& event : sample) {
      auto env = parser.parse(event);
      if (!env) continue;
      auto pin = reader.pin();
      if (pin.find(env->org_id, env->type) == nullptr) continue;
      const std::string_view type = catalogue.name(env->type);
      body.resize(delivery_body_size(type, env->payload));
      sink += write_delivery_body(type, env->payload, body.data());
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("hot path (parse + route + build body, one thread): %.2f M events/s (%zu bytes)\n",
              static_cast<double>(kRounds * sample.size()) / secs / 1e6, sink);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  const Say say{opt.quiet};

  say("fanout " + std::string(fanout::version()) + " demo");
  for (const auto& [lib, ver] : fanout::dependency_versions()) say("  " + lib + " " + ver);

  const EventCatalogue catalogue;
  std::string types;
  for (std::string_view n : catalogue.names()) types += " " + std::string(n);
  say("\nevent catalogue:" + types);

  std::optional<std::vector<Subscription>> accepted = validate_requests(catalogue, say);
  if (!accepted) return 1;
  RoutingTable table;
  load_table(table, *accepted, opt.subscriptions, catalogue, say);
  EnvelopeParser parser(catalogue);
  auto reader = table.make_reader();
  route_events(read_events(opt.events_file), parser, reader, catalogue, say);
  hot_path_rate(parser, reader, catalogue);

  // 5. The same events delivered for real.
  if (opt.delivery) deliver_for_real(read_events(opt.events_file), opt.quiet);
  return 0;
}
