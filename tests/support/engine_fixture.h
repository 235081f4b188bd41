// The engine's tests (tests/engine/): the events they publish, the options for delivering to
// receivers on loopback (tests/support/receiver.h), and a fixture holding an Engine whose
// observer is a Collector (tests/support/collector.h).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fanout/engine.h"
#include "tests/support/collector.h"

// Not fanout::testing: in a test inside namespace fanout, that name would hide ::testing.
namespace fanout::test_support {

// A business_updated event for `org_id` with `payload` (JSON); with an "id" when `id` is not
// empty, else the engine makes one up.
inline std::string event_json(std::int64_t org_id, std::string_view id = {},
                              std::string_view payload = R"({"n":1})") {
  std::string json = "{";
  if (!id.empty()) json.append(R"("id":")").append(id).append(R"(",)");
  json.append(R"("org_id":)").append(std::to_string(org_id));
  json.append(R"(,"type":"business_updated","payload":)").append(payload).append("}");
  return json;
}

// To receivers on 127.0.0.1 over http://: one worker, loopback allowed by the address guard,
// retries milliseconds apart (base 1 ms, factor 2, no jitter) instead of minutes.
inline EngineOptions loopback_engine_options() {
  EngineOptions o;
  o.workers = 1;
  o.insecure = true;
  o.allow_subnets = {"127.0.0.1/32"};
  o.retry.base_ms = 1;
  o.retry.factor = 2;
  o.retry.jitter = 0;
  return o;
}

// An Engine reporting to collector_. TearDown stops it at once; unless expect_nothing_left_ was
// cleared (a test that leaves deliveries in flight on purpose), nothing may be handed back.
class EngineFixture : public ::testing::Test {
 protected:
  void create(EngineOptions o) {
    auto e = Engine::create(std::move(o), &collector_);
    ASSERT_TRUE(e.has_value()) << e.error();
    engine_ = std::move(*e);
  }

  // Subscription `id`: organisation `org_id`'s business_updated events to `url`.
  void subscribe(std::int64_t id, std::int64_t org_id, const std::string& url,
                 std::vector<routing::Header> headers = {}) {
    routing::SubscriptionSpec spec;
    spec.org_id = org_id;
    spec.event_type = "business_updated";
    spec.url = url;
    spec.custom_headers = std::move(headers);
    auto s = engine_->upsert(id, spec);
    ASSERT_TRUE(s.has_value()) << url;
  }

  void run() {
    auto started = engine_->start();
    ASSERT_TRUE(started.has_value()) << started.error();
  }

  void TearDown() override {
    if (!engine_) return;
    auto left = engine_->stop(std::chrono::milliseconds(0));
    if (expect_nothing_left_) {
      EXPECT_TRUE(left.empty()) << left.size() << " handed back";
    }
  }

  fanout::testing::Collector collector_;
  std::unique_ptr<Engine> engine_;
  bool expect_nothing_left_ = true;
};

}  // namespace fanout::test_support
