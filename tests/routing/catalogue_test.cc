#include "routing/catalogue.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace fanout::routing {
namespace {

TEST(EventCatalogueTest, HoldsPartooTypesWithFixedIds) {
  const EventCatalogue c;
  const std::vector<std::string_view> expected = {"business_created", "business_updated",
                                                  "business_deleted", "message_created",
                                                  "message_updated",  "lead_received"};
  ASSERT_EQ(c.size(), expected.size());
  EXPECT_EQ(c.names(), expected);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(c.find(expected[i]), static_cast<EventTypeId>(i));
    EXPECT_EQ(c.name(static_cast<EventTypeId>(i)), expected[i]);
  }
}

TEST(EventCatalogueTest, FindIsExactAndCaseSensitive) {
  const EventCatalogue c;
  EXPECT_FALSE(c.find("Business_Created"));
  EXPECT_FALSE(c.find("business_created "));
  EXPECT_FALSE(c.find(""));
  EXPECT_FALSE(c.find("review_created"));
  EXPECT_EQ(c.name(6), "");
}

TEST(EventCatalogueTest, AddGivesTheNextIdAndFindsIt) {
  EventCatalogue c;
  auto id = c.add("review_created");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, 6);
  EXPECT_EQ(c.find("review_created"), EventTypeId{6});
  EXPECT_EQ(c.find("business_created"), EventTypeId{0});
  auto a = c.add("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(c.find("a"), *a);
}

TEST(EventCatalogueTest, AddRefusesBadNames) {
  EventCatalogue c;
  for (std::string_view bad :
       {"", "Review", "9lives", "_x", "review-created", "review created", "caf\xc3\xa9", "x\n"}) {
    auto r = c.add(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error(), CatalogueError::kBadName) << bad;
  }
  EXPECT_TRUE(c.add(std::string(64, 'a')).has_value());
  auto r = c.add(std::string(65, 'b'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), CatalogueError::kBadName);
  EXPECT_EQ(c.size(), 7u);
}

TEST(EventCatalogueTest, AddRefusesDuplicates) {
  EventCatalogue c;
  auto r = c.add("lead_received");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), CatalogueError::kDuplicate);
  EXPECT_EQ(c.size(), 6u);
}

TEST(EventCatalogueTest, RefusesPastTheLimitAndKeepsEarlierViewsValid) {
  EventCatalogue c;
  const std::string_view first = c.name(0);
  for (std::size_t i = c.size(); i < kMaxEventTypes; ++i) {
    ASSERT_TRUE(c.add("custom_" + std::to_string(i)).has_value()) << i;
  }
  auto r = c.add("one_too_many");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), CatalogueError::kFull);
  EXPECT_EQ(first, "business_created");
  EXPECT_EQ(c.find("custom_255"), EventTypeId{255});
}

TEST(EventCatalogueTest, CopiesAreIndependent) {
  EventCatalogue a;
  EventCatalogue b = a;
  ASSERT_TRUE(b.add("only_in_b").has_value());
  EXPECT_FALSE(a.find("only_in_b"));
  EXPECT_TRUE(b.find("only_in_b"));
  EXPECT_EQ(b.name(0), "business_created");
}

TEST(EventCatalogueTest, ErrorsHaveDistinctPhrases) {
  EXPECT_NE(to_string(CatalogueError::kBadName), to_string(CatalogueError::kDuplicate));
  EXPECT_NE(to_string(CatalogueError::kDuplicate), to_string(CatalogueError::kFull));
}

}  // namespace
}  // namespace fanout::routing
