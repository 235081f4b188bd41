// fanout-sink end to end: the real binary on port 0 (the port read from its first stdout line),
// loaded by h2load, nghttp and curl spawned from the test's loop, stopped with SIGTERM, and its
// JSON summary checked against what the clients sent.
#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "tests/transport/spawn_on_loop.h"

namespace {

using fanout::testing::have_program;
using fanout::testing::LoopChild;
using fanout::testing::number_after;
using fanout::testing::TempDir;

class FanoutSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"curl", "nghttp", "h2load"}) {
      if (!have_program(p)) {
        GTEST_SKIP() << "missing test peer " << p;
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
