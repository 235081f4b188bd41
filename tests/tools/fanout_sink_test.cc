// fanout-sink end to end: the real binary on port 0 (the port read from its first stdout line),
// loaded by h2load, nghttp and curl spawned from the test's loop, stopped with SIGTERM, and its
// JSON summary checked against what the clients sent.
#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/peers.h"
#include "tests/transport/spawn_on_loop.h"

namespace {

using fanout::testing::have_program;
using fanout::testing::LoopChild;
using fanout::testing::number_after;
using fanout::testing::TempDir;

// The sink's --plan hash as tools/README.md documents it: FNV-1a 64 of the event id's bytes,
// modulo the number of plans. Written out here rather than shared, so that a change on the
// sink's side that breaks the documented choice fails the test.
std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// The first id "evt-N" whose plan is `plan` of `plans`.
std::string id_for_plan(std::size_t plan, std::size_t plans) {
  for (int n = 0;; ++n) {
    std::string id = "evt-" + std::to_string(n);
    if (fnv1a64(id) % plans == plan) return id;
  }
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

class FanoutSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"curl", "nghttp", "h2load"}) {
      if (!have_program(p)) {
        FANOUT_MISSING_PEER(p);
      }
    }
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    loop_ready_ = true;
    body_ =
        dir_.write("body.json", "{\"type\":\"t\",\"payload\":\"" + std::string(560, 'p') + "\"}");
  }
  void TearDown() override {
    if (!loop_ready_) return;
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  LoopChild& spawn(const std::vector<std::string>& argv) {
    children_.push_back(std::make_unique<LoopChild>());
    EXPECT_TRUE(children_.back()->start(&loop_, argv)) << children_.back()->error();
    return *children_.back();
  }
  void run_until(const std::function<bool()>& done) {
    while (!done()) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) {
        ADD_FAILURE() << "the loop ran out of work";
        return;
      }
    }
  }

  // Starts the sink with `flags` and returns its port, read from "listening on 127.0.0.1:PORT".
  int start_sink(std::vector<std::string> flags) {
    std::vector<std::string> argv = {FANOUT_SINK_PATH, "--listen", "127.0.0.1:0", "--quiet"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    sink_ = &spawn(argv);
    run_until([&] { return sink_->out().find('\n') != std::string::npos || sink_->done(); });
    const std::string prefix = "listening on 127.0.0.1:";
    if (sink_->out().rfind(prefix, 0) != 0) {
      ADD_FAILURE() << sink_->describe();
      return 0;
    }
    return std::stoi(sink_->out().substr(prefix.size()));
  }
  // SIGTERM, then the sink's stdout after its first line.
  std::string stop_sink() {
    sink_->kill(SIGTERM);
    run_until([&] { return sink_->done(); });
    EXPECT_EQ(sink_->exit_status(), 0) << sink_->describe();
    EXPECT_EQ(sink_->term_signal(), 0) << sink_->describe();
    return sink_->out().substr(sink_->out().find('\n') + 1);
  }
  void run_clients(const std::vector<LoopChild*>& clients) {
    run_until([&] {
      return std::all_of(clients.begin(), clients.end(), [](LoopChild* c) { return c->done(); });
    });
  }
  std::string url(int port, const std::string& path = "/") {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  uv_loop_t loop_{};
  bool loop_ready_ = false;
  TempDir dir_;
  std::string body_;
  std::vector<std::unique_ptr<LoopChild>> children_;
  LoopChild* sink_ = nullptr;
};

TEST_F(FanoutSinkTest, CountsRequestsStatusesAndDuplicateEventIds) {
  const int port = start_sink({"--json", "--record", dir_.file("rec.jsonl")});
  ASSERT_NE(port, 0);
  // 200 h2c requests all carrying the same id: 1 unique, 199 duplicates.
  LoopChild& load = spawn({"h2load", "-n", "200", "-c", "2", "-m", "10", "-d", body_, "-H",
                           "x-partoo-event-id: dup", url(port)});
  // 3 HTTP/1.1 requests: e1, e2, e1 -> 2 unique, 1 duplicate.
  LoopChild& c1 = spawn({"curl", "-sS", "-o", "/dev/null", "--data-binary", "@" + body_, "-H",
                         "X-Partoo-Event-Id: e1", url(port, "/a"), url(port, "/b")});
  LoopChild& c2 = spawn({"curl", "-sS", "-o", "/dev/null", "--http2-prior-knowledge", "-H",
                         "X-Partoo-Event-Id: e2", url(port, "/c")});
  // One without an id.
  LoopChild& c3 = spawn({"nghttp", "-v", url(port, "/d")});
  run_clients({&load, &c1, &c2, &c3});
  ASSERT_EQ(load.exit_status(), 0) << load.describe();
  EXPECT_NE(load.out().find("200 succeeded"), std::string::npos) << load.out();
  ASSERT_EQ(c1.exit_status(), 0) << c1.describe();
  ASSERT_EQ(c2.exit_status(), 0) << c2.describe();
  ASSERT_EQ(c3.exit_status(), 0) << c3.describe();
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"requests\":"), 204) << summary;
  EXPECT_EQ(number_after(summary, "\"by_status\":{\"200\":"), 204) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), 3) << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), 200) << summary;
  EXPECT_EQ(number_after(summary, "\"without_event_id\":"), 1) << summary;
  EXPECT_EQ(number_after(summary, "\"http/1.1\":"), 2) << summary;

  const std::string rec = dir_.read("rec.jsonl");
  EXPECT_EQ(std::count(rec.begin(), rec.end(), '\n'), 204);
  EXPECT_NE(rec.find("\"path\":\"/a\""), std::string::npos);
  EXPECT_NE(rec.find("[\"X-Partoo-Event-Id\",\"e1\"]"), std::string::npos);
  // The body {"type":"t",... in base64.
  EXPECT_NE(rec.find("\"body_base64\":\"eyJ0eXBlIjoidCIs"), std::string::npos);
}

TEST_F(FanoutSinkTest, StatusMixIsSeededAndCounted) {
  const int port = start_sink({"--json", "--status-mix", "200:50,503:30,404:20", "--seed", "7"});
  ASSERT_NE(port, 0);
  LoopChild& load = spawn({"h2load", "-n", "400", "-c", "1", "-m", "20", url(port)});
  run_clients({&load});
  ASSERT_EQ(load.exit_status(), 0) << load.describe();
  const std::string summary = stop_sink();
  const long long ok = number_after(summary, "\"200\":");
  const long long nf = number_after(summary, "\"404\":");
  const long long un = number_after(summary, "\"503\":");
  EXPECT_EQ(ok + nf + un, 400) << summary;
  EXPECT_GT(ok, 0);
  EXPECT_GT(nf, 0);
  EXPECT_GT(un, 0);
  // h2load's own view agrees.
  EXPECT_NE(load.out().find(std::to_string(ok) + " 2xx, 0 3xx, " + std::to_string(nf) + " 4xx, " +
                            std::to_string(un) + " 5xx"),
            std::string::npos)
      << load.out() << summary;
}

TEST_F(FanoutSinkTest, ResetRateOneResetsEveryStream) {
  const int port = start_sink({"--json", "--reset-rate", "1"});
  ASSERT_NE(port, 0);
  LoopChild& ng = spawn({"nghttp", "-v", url(port)});
  LoopChild& h1 = spawn({"curl", "-sS", "-o", "/dev/null", "--http1.1", url(port)});
  run_clients({&ng, &h1});
  EXPECT_NE(ng.out().find("recv RST_STREAM"), std::string::npos) << ng.describe();
  EXPECT_EQ(h1.exit_status(), 52) << h1.describe();  // empty reply: connection closed
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"resets\":"), 2) << summary;
  EXPECT_EQ(summary.find("\"200\""), std::string::npos) << summary;
}

TEST_F(FanoutSinkTest, GoawayEveryNDrainsConnections) {
  const int port = start_sink({"--json", "--goaway-every", "3"});
  ASSERT_NE(port, 0);
  LoopChild& ng = spawn({"nghttp", "-v", "-m", "3", url(port)});
  run_clients({&ng});
  EXPECT_NE(ng.out().find("recv GOAWAY"), std::string::npos) << ng.describe();
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"goaways\":"), 1) << summary;
  EXPECT_EQ(number_after(summary, "\"200\":"), 3) << summary;
}

TEST_F(FanoutSinkTest, DelayedAnswersAllArrive) {
  const int port = start_sink({"--json", "--delay-ms", "20"});
  ASSERT_NE(port, 0);
  LoopChild& load = spawn({"h2load", "-n", "50", "-c", "1", "-m", "10", url(port)});
  run_clients({&load});
  EXPECT_NE(load.out().find("50 succeeded"), std::string::npos) << load.describe();
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"200\":"), 50) << summary;
}

TEST_F(FanoutSinkTest, BlackHoleNeverAnswersAndSigtermStillExits) {
  // --goaway-every 1 makes the arrival of the request visible to the client (nghttp prints the
  // GOAWAY as it comes), so the test knows when to send SIGTERM without waiting on a clock.
  const int port = start_sink({"--json", "--blackhole", "--goaway-every", "1"});
  ASSERT_NE(port, 0);
  LoopChild& waiting = spawn({"nghttp", "-v", url(port)});
  run_until(
      [&] { return waiting.out().find("recv GOAWAY") != std::string::npos || waiting.done(); });
  const std::string summary = stop_sink();
  run_clients({&waiting});
  EXPECT_EQ(waiting.out().find(":status:"), std::string::npos) << waiting.describe();
  EXPECT_EQ(number_after(summary, "\"requests\":"), 1) << summary;
  EXPECT_EQ(number_after(summary, "\"blackholed\":"), 1) << summary;
  EXPECT_NE(summary.find("\"by_status\":{}"), std::string::npos) << summary;
}

TEST_F(FanoutSinkTest, PlanAnswersEachEventByItsAttempt) {
  // Plan 0 ends on 200, plan 1 resets at attempt 3 and ends on 201, plan 2 is slow.
  const std::vector<std::vector<std::string>> plans = {
      {"503", "404", "200"}, {"429", "302", "reset", "201"}, {"slow:50:200"}};
  const int port = start_sink({"--json", "--record", dir_.file("rec.jsonl"), "--plan",
                               "503,404,200;429,302,reset,201;slow:50:200"});
  ASSERT_NE(port, 0);
  // The hash spreads these ids over all three plans, and the choice is the documented one.
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  const std::vector<std::string> ids = {id_for_plan(0, 3), id_for_plan(1, 3), id_for_plan(2, 3)};

  struct Ask {
    std::size_t plan;
    std::string attempt;  // the header's value; empty: no header
    bool h2;
    std::string expected;  // a status, or "reset"
    LoopChild* curl = nullptr;
  };
  std::vector<Ask> asks;
  for (std::size_t p = 0; p < plans.size(); ++p) {
    for (const bool h2 : {false, true}) {
      // Attempts 1..5: past the last step the last step repeats.
      for (std::size_t attempt = 1; attempt <= 5; ++attempt) {
        std::string step = plans[p][std::min(attempt, plans[p].size()) - 1];
        if (step.starts_with("slow:")) step = step.substr(step.rfind(':') + 1);
        asks.push_back({p, std::to_string(attempt), h2, step});
      }
      // Without the header, or with one that is not a number: attempt 1.
      std::string first = plans[p][0];
      if (first.starts_with("slow:")) first = first.substr(first.rfind(':') + 1);
      asks.push_back({p, "", h2, first});
      asks.push_back({p, "x", h2, first});
    }
  }
  std::vector<LoopChild*> clients;
  for (Ask& a : asks) {
    // Headers on stdout (-D -), then "code=STATUS" (000 when no answer came).
    std::vector<std::string> argv = {"curl", "-sS", "-D", "-", "-o", "/dev/null"};
    argv.insert(argv.end(), {"-w", "code=%{http_code}", "--data-binary", "@" + body_});
    argv.insert(argv.end(), {"-H", "X-Partoo-Event-Id: " + ids[a.plan]});
    if (!a.attempt.empty()) argv.insert(argv.end(), {"-H", "X-Partoo-Attempt: " + a.attempt});
    argv.push_back(a.h2 ? "--http2-prior-knowledge" : "--http1.1");
    argv.push_back(url(port, "/hook"));
    a.curl = &spawn(argv);
    clients.push_back(a.curl);
  }
  run_clients(clients);

  std::size_t resets = 0;
  std::size_t by_plan_ok[3] = {};
  for (const Ask& a : asks) {
    const std::string what = ids[a.plan] + " (plan " + std::to_string(a.plan) + ") attempt '" +
                             a.attempt + "' over " + (a.h2 ? "h2" : "http/1.1") + "\n" +
                             a.curl->describe();
    if (a.expected == "reset") {
      ++resets;
      // curl: 92 for a stream reset by RST_STREAM, 52 for an HTTP/1.1 connection closed.
      EXPECT_EQ(a.curl->exit_status(), a.h2 ? 92 : 52) << what;
      EXPECT_NE(a.curl->out().find("code=000"), std::string::npos) << what;
      continue;
    }
    EXPECT_EQ(a.curl->exit_status(), 0) << what;
    EXPECT_NE(a.curl->out().find("code=" + a.expected), std::string::npos) << what;
    // No answer carries a Location, a 302 included.
    std::string headers = a.curl->out();
    std::transform(headers.begin(), headers.end(), headers.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    EXPECT_EQ(headers.find("location:"), std::string::npos) << what;
    if (a.expected == "200") ++by_plan_ok[a.plan];
  }
  EXPECT_EQ(resets, 2U);          // plan 1, attempt 3, over each protocol
  EXPECT_EQ(by_plan_ok[0], 6U);   // attempts 3, 4, 5 over each protocol
  EXPECT_EQ(by_plan_ok[2], 14U);  // every request of the slow plan
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"requests\":"), static_cast<long long>(asks.size())) << summary;
  EXPECT_EQ(number_after(summary, "\"resets\":"), 2) << summary;
  EXPECT_EQ(number_after(summary, "\"abandoned\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"201\":"), 4) << summary;   // plan 1, attempts 4, 5
  EXPECT_EQ(number_after(summary, "\"302\":"), 2) << summary;   // plan 1, attempt 2
  EXPECT_EQ(number_after(summary, "\"404\":"), 2) << summary;   // plan 0, attempt 2
  EXPECT_EQ(number_after(summary, "\"429\":"), 6) << summary;   // plan 1: 1, none, x
  EXPECT_EQ(number_after(summary, "\"503\":"), 6) << summary;   // plan 0: 1, none, x
  EXPECT_EQ(number_after(summary, "\"200\":"), 20) << summary;  // 6 + 14

  // The record says what the sink answered, one line per request.
  const std::string rec = dir_.read("rec.jsonl");
  EXPECT_EQ(static_cast<std::size_t>(std::count(rec.begin(), rec.end(), '\n')), asks.size());
  EXPECT_EQ(count_of(rec, "\"answer\":\"reset\""), 2U) << rec;
  EXPECT_EQ(count_of(rec, "\"answer\":200,"), 20U) << rec;
  EXPECT_EQ(count_of(rec, "\"answer\":503,"), 6U) << rec;
  EXPECT_EQ(count_of(rec, "\"answer\":302,"), 2U) << rec;
  // The reset's own line: plan 1's id at attempt 3.
  const std::size_t reset_at = rec.find("\"answer\":\"reset\"");
  ASSERT_NE(reset_at, std::string::npos);
  std::string reset_line = rec.substr(reset_at, rec.find('\n', reset_at) - reset_at);
  std::transform(reset_line.begin(), reset_line.end(), reset_line.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_NE(reset_line.find("[\"x-partoo-event-id\",\"" + ids[1] + "\"]"), std::string::npos)
      << reset_line;
  EXPECT_NE(reset_line.find("[\"x-partoo-attempt\",\"3\"]"), std::string::npos) << reset_line;
}

TEST_F(FanoutSinkTest, PlanIsTheSameAfterARestart) {
  // The answer depends on the event id and the attempt only: a second sink (a restart of the
  // receiver, or the same plan seen by a restarted sender) answers the same.
  const std::string spec = "503,200;404;429,reset,200";
  const std::string id = id_for_plan(2, 3);
  for (int run = 0; run < 2; ++run) {
    const int port = start_sink({"--json", "--plan", spec});
    ASSERT_NE(port, 0);
    std::vector<LoopChild*> curls;
    for (const char* attempt : {"1", "2", "3"}) {
      curls.push_back(&spawn({"curl", "-sS", "-o", "/dev/null", "-w", "code=%{http_code}",
                              "--http1.1", "-H", "X-Partoo-Event-Id: " + id, "-H",
                              std::string("X-Partoo-Attempt: ") + attempt, url(port)}));
    }
    run_clients(curls);
    EXPECT_EQ(curls[0]->out(), "code=429") << "run " << run << "\n" << curls[0]->describe();
    EXPECT_EQ(curls[1]->exit_status(), 52) << "run " << run << "\n" << curls[1]->describe();
    EXPECT_EQ(curls[2]->out(), "code=200") << "run " << run << "\n" << curls[2]->describe();
    stop_sink();
  }
}

TEST_F(FanoutSinkTest, BadPlansExitWithTwo) {
  struct Bad {
    std::vector<std::string> flags;
    std::string says;
  };
  for (const Bad& b : std::vector<Bad>{
           {{"--plan", ""}, "--plan: plan 1 is empty"},
           {{"--plan", "200;;503"}, "--plan: plan 2 is empty"},
           {{"--plan", "200;"}, "--plan: plan 2 is empty"},
           {{"--plan", "200,,503"}, "--plan: plan 1 has an empty step"},
           {{"--plan", "99"}, "--plan: status 99 in '99' is outside 200..599"},
           {{"--plan", "200;600"}, "--plan: status 600 in '600' is outside 200..599"},
           {{"--plan", "101"}, "--plan: status 101 in '101' is outside 200..599 (a 1xx"},
           {{"--plan", "ok"}, "--plan: 'ok' is not a status, reset or slow:MS:STATUS"},
           {{"--plan", "slow:50"}, "--plan: 'slow:50' is not slow:MS:STATUS"},
           {{"--plan", "slow:x:200"}, "--plan: 'slow:x:200' is not slow:MS:STATUS"},
           {{"--plan", "slow:50:abc"}, "--plan: 'slow:50:abc' is not slow:MS:STATUS"},
           {{"--plan", "slow:50:700"}, "--plan: status 700 in 'slow:50:700'"},
           {{"--plan", "200", "--status-mix", "200:1"},
            "--plan and --status-mix cannot be used together"},
           {{"--status-mix", "503:1", "--plan", "200"},
            "--plan and --status-mix cannot be used together"},
           {{"--plan", "200", "--reset-rate", "0"},
            "--plan and --reset-rate cannot be used together"},
           {{"--plan", "200", "--blackhole"}, "--plan and --blackhole cannot be used together"},
       }) {
    std::vector<std::string> argv = {FANOUT_SINK_PATH, "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), b.flags.begin(), b.flags.end());
    LoopChild& c = spawn(argv);
    run_until([&] { return c.done(); });
    EXPECT_EQ(c.exit_status(), 2) << c.describe();
    EXPECT_NE(c.err().find("fanout-sink: " + b.says), std::string::npos)
        << "expected: " << b.says << "\n"
        << c.describe();
  }
}

TEST_F(FanoutSinkTest, BadFlagsExitWithTwo) {
  for (const std::vector<std::string>& flags : {std::vector<std::string>{"--status-mix", "200:x"},
                                                {"--reset-rate", "1.5"},
                                                {"--frobnicate"},
                                                {"--goaway-every", "0"},
                                                {"--tls-cert", "c.pem"},
                                                {"--listen", "localhost:0"},
                                                {"--delay-ms", "-1"}}) {
    std::vector<std::string> argv = {FANOUT_SINK_PATH, "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    LoopChild& c = spawn(argv);
    run_until([&] { return c.done(); });
    EXPECT_EQ(c.exit_status(), 2) << c.describe();
    EXPECT_NE(c.err().find("fanout-sink: "), std::string::npos) << c.describe();
  }
  LoopChild& nolisten = spawn({FANOUT_SINK_PATH, "--json"});
  run_until([&] { return nolisten.done(); });
  EXPECT_EQ(nolisten.exit_status(), 2);
}

}  // namespace
