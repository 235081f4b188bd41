// Entry ids and the table of held entries (source/redis/entries.h), and redis:// URLs.
#include "source/redis/entries.h"

#include <gtest/gtest.h>

#include "fanout/redis_source.h"

namespace fanout::source {
namespace {

TEST(EntryIdTest, ParsesAndFormatsBothHalves) {
  const auto id = EntryId::parse("1700000000000-42");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->ms, 1700000000000u);
  EXPECT_EQ(id->seq, 42u);
  char buf[EntryId::kMaxText];
  EXPECT_EQ(id->format(buf), "1700000000000-42");
  const EntryId max{UINT64_MAX, UINT64_MAX};
  const auto back = EntryId::parse(max.format(buf));
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == max);
}

TEST(EntryIdTest, RefusesAnythingElse) {
  for (const char* bad : {"", "-", "1-", "-1", "12", "1-2-3", "a-1", "1-b", " 1-2", "1-2 ",
                          "99999999999999999999-0"}) {
    EXPECT_FALSE(EntryId::parse(bad).has_value()) << bad;
  }
}

TEST(EntryTableTest, TagsFindTheirEntryAndSlotsAreReused) {
  EntryTable t;
  const EntryId a{1, 0}, b{1, 1}, c{2, 0};
  const std::uint32_t sa = t.acquire(a), sb = t.acquire(b);
  EXPECT_EQ(t.held(), 2u);
  EXPECT_TRUE(t.holds(a));
  ASSERT_NE(t.from_tag(sa + 1ULL), nullptr);
  const EntryTable::Slot* slot_b = t.from_tag(sb + 1ULL);
  ASSERT_NE(slot_b, nullptr);
  EXPECT_TRUE(slot_b->id == b);
  EXPECT_EQ(t.from_tag(0), nullptr);
  EXPECT_EQ(t.from_tag(99), nullptr);
  t.release(sa);
  EXPECT_FALSE(t.holds(a));
  EXPECT_EQ(t.from_tag(sa + 1ULL), nullptr) << "a released slot answers no tag";
  t.release(sa);  // twice: no effect
  EXPECT_EQ(t.held(), 1u);
  EXPECT_EQ(t.acquire(c), sa) << "the free slot is reused";
  const EntryTable::Slot* slot_c = t.from_tag(sa + 1ULL);
  ASSERT_NE(slot_c, nullptr);
  EXPECT_FALSE(slot_c->retry_state);
  std::size_t n = 0;
  t.for_each_held([&](const EntryId&) { ++n; });
  EXPECT_EQ(n, 2u);
}

TEST(RedisUrlTest, ParsesHostPortDatabaseAndCredentials) {
  auto ep = parse_redis_url("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(ep.has_value()) << ep.error();
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->db, 2);
  ep = parse_redis_url("redis://user:secret@[::1]:7000");
  ASSERT_TRUE(ep.has_value()) << ep.error();
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 7000);
  EXPECT_EQ(ep->user, "user");
  EXPECT_EQ(ep->password, "secret");
  ep = parse_redis_url("redis://:pw@localhost");
  ASSERT_TRUE(ep.has_value()) << ep.error();
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->password, "pw");
  EXPECT_TRUE(ep->user.empty());
}

TEST(RedisUrlTest, ErrorsNameTheRule) {
  EXPECT_NE(parse_redis_url("http://x").error().find("must start with redis://"),
            std::string::npos);
  EXPECT_NE(parse_redis_url("redis://h:0").error().find("port must be 1..65535"),
            std::string::npos);
  EXPECT_NE(parse_redis_url("redis://h:1/x").error().find("database must be a number"),
            std::string::npos);
  EXPECT_NE(parse_redis_url("redis://:1").error().find("host is empty"), std::string::npos);
  EXPECT_NE(parse_redis_url("redis://[::1").error().find("unclosed"), std::string::npos);
}

}  // namespace
}  // namespace fanout::source
