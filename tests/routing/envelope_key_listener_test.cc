// EnvelopeParser's KeyListener (routing/envelope.h): told the routing key once, as soon as org_id
// and type are both read and valid, before the rest of the input is walked; never for an input
// whose key is not valid.
#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "routing/catalogue.h"
#include "routing/envelope.h"

namespace fanout::routing {
namespace {

struct Told {
  std::int64_t org_id;
  EventTypeId type;
};

class Recorder final : public KeyListener {
 public:
  void on_key(std::int64_t org_id, EventTypeId type) noexcept override {
    told.push_back({org_id, type});
  }
  std::vector<Told> told;
};

class KeyListenerTest : public ::testing::Test {
 protected:
  EventTypeId business_updated() const { return *catalogue_.find("business_updated"); }

  EventCatalogue catalogue_;
  EnvelopeParser parser_{catalogue_};
  Recorder recorder_;
};

TEST_F(KeyListenerTest, ToldTheKeyOnceForAnAcceptedEnvelope) {
  const auto env = parser_.parse(
      R"({"org_id":42,"type":"business_updated","payload":{"a":[1,2,{"b":"c"}]}})", &recorder_);
  ASSERT_TRUE(env.has_value());
  ASSERT_EQ(recorder_.told.size(), 1u);
  EXPECT_EQ(recorder_.told[0].org_id, 42);
  EXPECT_EQ(recorder_.told[0].type, business_updated());
}

// The key comes before the payload is validated: a payload whose fault only the walk finds
// (not stage 1: an unknown literal) is refused after the listener was told.
TEST_F(KeyListenerTest, ToldBeforeThePayloadIsWalked) {
  const auto env =
      parser_.parse(R"({"org_id":7,"type":"business_updated","payload":{"a":tru}})", &recorder_);
  ASSERT_FALSE(env.has_value());
  EXPECT_EQ(env.error(), EnvelopeError::kInvalidJson);
  ASSERT_EQ(recorder_.told.size(), 1u);
  EXPECT_EQ(recorder_.told[0].org_id, 7);
}

// Whatever the key order: told when the later of the two is read.
TEST_F(KeyListenerTest, ToldWhicheverOfTheTwoComesLast) {
  const auto env =
      parser_.parse(R"({"payload":{},"type":"business_updated","id":"x","org_id":9})", &recorder_);
  ASSERT_TRUE(env.has_value());
  ASSERT_EQ(recorder_.told.size(), 1u);
  EXPECT_EQ(recorder_.told[0].org_id, 9);
  EXPECT_EQ(recorder_.told[0].type, business_updated());
}

TEST_F(KeyListenerTest, NotToldWithoutAValidKey) {
  for (const std::string_view input : {
           R"({"org_id":1,"type":"no_such_type","payload":{}})",
           R"({"org_id":"1","type":"business_updated","payload":{}})",
           R"({"org_id":0,"type":"business_updated","payload":{}})",
           R"({"type":"business_updated","payload":{}})",
           R"({"org_id":1,"payload":{}})",
           R"({"org_id":1,"type":3,"payload":{}})",
           R"([{"org_id":1,"type":"business_updated","payload":{}}])",
       }) {
    const auto env = parser_.parse(input, &recorder_);
    EXPECT_FALSE(env.has_value()) << input;
    EXPECT_TRUE(recorder_.told.empty()) << input;
  }
}

// A hint, not a decision: told once for the first valid pair, and the envelope is still refused
// when a field comes twice.
TEST_F(KeyListenerTest, ToldOnceEvenWhenAFieldComesTwice) {
  const auto env = parser_.parse(
      R"({"org_id":5,"type":"business_updated","org_id":6,"payload":{}})", &recorder_);
  ASSERT_FALSE(env.has_value());
  EXPECT_EQ(env.error(), EnvelopeError::kDuplicateField);
  ASSERT_EQ(recorder_.told.size(), 1u);
  EXPECT_EQ(recorder_.told[0].org_id, 5);
}

// Each parse() tells its own listener, and a parse without one tells nobody.
TEST_F(KeyListenerTest, EachParseTellsItsOwnListener) {
  ASSERT_TRUE(parser_.parse(R"({"org_id":1,"type":"business_updated","payload":{}})", &recorder_)
                  .has_value());
  ASSERT_TRUE(parser_.parse(R"({"org_id":2,"type":"business_updated","payload":{}})").has_value());
  Recorder other;
  ASSERT_TRUE(
      parser_.parse(R"({"org_id":3,"type":"business_updated","payload":{}})", &other).has_value());
  ASSERT_EQ(recorder_.told.size(), 1u);
  EXPECT_EQ(recorder_.told[0].org_id, 1);
  ASSERT_EQ(other.told.size(), 1u);
  EXPECT_EQ(other.told[0].org_id, 3);
}

}  // namespace
}  // namespace fanout::routing
