// What the engine's delivery tests share (engine_test.cc, engine_network_test.cc,
// engine_stop_test.cc, engine_peers_test.cc): events for organisation 42, options for loopback
// receivers with millisecond retries, and EngineTest, an engine whose subscription 7 sends
// organisation 42's business_updated events to a receiver on 127.0.0.1 with two custom headers.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>

#include "fanout/engine.h"
#include "tests/support/collector.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"

namespace fanout::engine_testing {

using fanout::testing::Collector;
using fanout::testing::Received;
using fanout::testing::Receiver;

inline std::string event_for(std::int64_t org_id, const std::string& id) {
  return fanout::test_support::event_json(org_id, id);
}

// Milliseconds instead of minutes between attempts: the schedule's shape is tested on
// backoff_ms itself.
inline EngineOptions test_options() {
  return fanout::test_support::loopback_engine_options();
}

class EngineTest : public fanout::test_support::EngineFixture {
 protected:
  void start(EngineOptions o, std::uint16_t port) {
    create(std::move(o));
    ASSERT_TRUE(engine_);
    subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook?x=1",
              {{"X-Auth-Token", "s3cr3t"}, {"X-Tenant", "acme"}});
    run();
  }
  static std::string event(const std::string& id) {
    return fanout::test_support::event_json(42, id, R"({"business":{"id":"b1","name":"Café"}})");
  }
};

}  // namespace fanout::engine_testing
