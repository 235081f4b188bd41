#include "tools/fanoutd/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "engine/signer.h"
#include "routing/catalogue.h"
#include "routing/subscription.h"
#include "tests/tools/fanoutd/store_fixture.h"

namespace fanout::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<std::int64_t> ids_of(const std::vector<routing::Subscription>& items) {
  std::vector<std::int64_t> ids;
  for (const auto& s : items) ids.push_back(s.id);
  return ids;
}

void expect_same(const PendingDelivery& a, const PendingDelivery& b) {
  EXPECT_EQ(a.event_id, b.event_id);
  EXPECT_EQ(a.org_id, b.org_id);
  EXPECT_EQ(a.event_type, b.event_type);
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.subscription_id, b.subscription_id);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.next_attempt_unix_ms, b.next_attempt_unix_ms);
}

// --- opening and migrations ---

TEST_F(StoreTest, OpenCreatesDirectoryAndReachesLatestVersion) {
  data_ = root_ / "nested" / "deeper" / "data";
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::is_directory(data_));
  EXPECT_TRUE(fs::is_regular_file(data_ / "fanoutd.db"));
  EXPECT_GE(Store::latest_schema_version(), 1);
  EXPECT_EQ(store->schema_version(), Store::latest_schema_version());
  // Only the owner may read the database (it holds the signing key).
  const auto perms = fs::status(data_ / "fanoutd.db").permissions();
  EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);

  // WAL mode is persistent: a plain connection sees it.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((data_ / "fanoutd.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(StoreTest, ReopenKeepsData) {
  std::int64_t id = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    auto created = store->create({sub(42, "business_updated", "https://a.example/hook")}, 1000);
    ASSERT_TRUE(created.has_value()) << created.error().message;
    id = created->at(0).id;
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->schema_version(), Store::latest_schema_version());
  auto got = store->get(id);
  ASSERT_TRUE(got.has_value()) << got.error();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->url, "https://a.example/hook");
  EXPECT_EQ((*got)->created_at_us, 1000);
}

TEST_F(StoreTest, RefusesNewerSchemaNamingBothVersions) {
  ASSERT_NE(open_store(), nullptr);
  const int newer = Store::latest_schema_version() + 7;
  const std::string sql = "PRAGMA user_version = " + std::to_string(newer);
  raw_exec(sql.c_str());
  auto store = Store::open(data_, catalogue_);
  ASSERT_FALSE(store.has_value());
  EXPECT_THAT(store.error(), HasSubstr(std::to_string(newer)));
  EXPECT_THAT(store.error(), HasSubstr("latest " + std::to_string(Store::latest_schema_version())));
}

// --- subscriptions ---

TEST_F(StoreTest, CreateGetAndListWithPagination) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const char* types[] = {"business_created", "business_updated", "business_deleted",
                         "message_created", "message_updated"};
  std::vector<routing::Subscription> batch;
  for (const char* type : types) {
    batch.push_back(sub(42, type, std::string("https://h.example/") + type));
  }
  auto created = store->create(batch, 5000);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  ASSERT_THAT(*created, SizeIs(5));
  for (std::size_t i = 0; i < created->size(); ++i) {
    const auto& s = (*created)[i];
    if (i > 0) {
      EXPECT_GT(s.id, (*created)[i - 1].id);  // assigned in order
    }
    EXPECT_EQ(s.url, batch[i].url);
    EXPECT_EQ(s.created_at_us, 5000);
    EXPECT_EQ(s.updated_at_us, 5000);
  }
  // Another organisation, created in between others of 42 (ids interleave).
  auto other = store->create({sub(43, "business_created", "https://o.example/1"),
                              sub(43, "lead_received", "https://o.example/2")},
                             6000);
  ASSERT_TRUE(other.has_value()) << other.error().message;
  auto late = store->create({sub(42, "lead_received", "https://h.example/late")}, 7000);
  ASSERT_TRUE(late.has_value()) << late.error().message;

  std::vector<std::int64_t> all42 = ids_of(*created);
  all42.push_back(late->at(0).id);

  auto got = store->get((*created)[2].id);
  ASSERT_TRUE(got.has_value()) << got.error();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, (*created)[2]);
  auto missing = store->get(999'999);
  ASSERT_TRUE(missing.has_value()) << missing.error();
  EXPECT_FALSE(missing->has_value());

  auto page1 = store->list(42, 0, 4);
  ASSERT_TRUE(page1.has_value()) << page1.error();
  EXPECT_EQ(page1->count, 6);
  EXPECT_EQ(ids_of(page1->items), std::vector<std::int64_t>(all42.begin(), all42.begin() + 4));
  EXPECT_EQ(page1->items[0], (*created)[0]);
  auto page2 = store->list(42, 4, 4);
  ASSERT_TRUE(page2.has_value()) << page2.error();
  EXPECT_EQ(page2->count, 6);
  EXPECT_EQ(ids_of(page2->items), std::vector<std::int64_t>(all42.begin() + 4, all42.end()));
  EXPECT_EQ(page2->items[1], late->at(0));
  auto past = store->list(42, 30, 4);
  ASSERT_TRUE(past.has_value()) << past.error();
  EXPECT_EQ(past->count, 6);
  EXPECT_THAT(past->items, IsEmpty());

  auto org43 = store->list(43, 0, 30);
  ASSERT_TRUE(org43.has_value()) << org43.error();
  EXPECT_EQ(org43->count, 2);
  EXPECT_EQ(org43->items, *other);
  auto nobody = store->list(44, 0, 30);
  ASSERT_TRUE(nobody.has_value()) << nobody.error();
  EXPECT_EQ(nobody->count, 0);
  EXPECT_THAT(nobody->items, IsEmpty());
}

TEST_F(StoreTest, CreateRefusesDuplicateInsideBatchAndWritesNothing) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto created = store->create({sub(42, "business_created", "https://a.example/1"),
                                sub(42, "business_updated", "https://a.example/2"),
                                sub(42, "business_created", "https://a.example/3")},
                               1000);
  ASSERT_FALSE(created.has_value());
  EXPECT_EQ(created.error().kind, StoreError::Kind::kDuplicate);
  EXPECT_EQ(created.error().index, 2u);
  EXPECT_EQ(created.error().existing_id, 0);
  EXPECT_THAT(created.error().message, HasSubstr("business_created"));
  auto page = store->list(42, 0, 100);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page->count, 0);
}

TEST_F(StoreTest, CreateRefusesDuplicateAgainstTableAndWritesNothing) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto first = store->create({sub(42, "business_updated", "https://a.example/1")}, 1000);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  const std::int64_t existing = first->at(0).id;

  // Whatever its URL, the pair is taken; the item before it in the batch is not written either.
  auto again = store->create({sub(42, "lead_received", "https://a.example/2"),
                              sub(42, "business_updated", "https://other.example/")},
                             2000);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().kind, StoreError::Kind::kDuplicate);
  EXPECT_EQ(again.error().index, 1u);
  EXPECT_EQ(again.error().existing_id, existing);
  auto page = store->list(42, 0, 100);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page->count, 1);
  EXPECT_EQ(page->items, *first);

  // The same type for another organisation is fine.
  auto other = store->create({sub(7, "business_updated", "https://a.example/1")}, 3000);
  ASSERT_TRUE(other.has_value()) << other.error().message;
}

TEST_F(StoreTest, IdsAreNeverReusedAfterDelete) {
  std::int64_t second = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    auto a = store->create({sub(42, "business_updated", "https://a.example/")}, 1000);
    ASSERT_TRUE(a.has_value()) << a.error().message;
    ASSERT_TRUE(store->remove(a->at(0).id).has_value());
    auto b = store->create({sub(42, "business_updated", "https://a.example/")}, 2000);
    ASSERT_TRUE(b.has_value()) << b.error().message;
    EXPECT_GT(b->at(0).id, a->at(0).id);
    second = b->at(0).id;
    ASSERT_TRUE(store->remove(second).has_value());
  }
  auto store = open_store();  // the sequence survives a restart too
  ASSERT_NE(store, nullptr);
  auto c = store->create({sub(42, "business_updated", "https://a.example/")}, 3000);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_GT(c->at(0).id, second);
}

TEST_F(StoreTest, UpdateReplacesUrlAndHeadersAndKeepsCreatedAt) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto created = store->create(
      {sub(42, "business_updated", "https://a.example/old", {{"X-One", "1"}, {"X-Two", "2"}})},
      1000);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  const std::int64_t id = created->at(0).id;

  auto change = sub(42, "business_updated", "http://b.example:8080/new?x=1", {{"X-Three", "3"}});
  change.id = id;
  change.org_id = 99;  // org_id never changes: ignored
  auto updated = store->update(change, 2000);
  ASSERT_TRUE(updated.has_value()) << updated.error().message;
  EXPECT_EQ(updated->id, id);
  EXPECT_EQ(updated->org_id, 42);
  EXPECT_EQ(updated->event_type, *catalogue_.find("business_updated"));
  EXPECT_EQ(updated->url, "http://b.example:8080/new?x=1");
  EXPECT_EQ(updated->parts.scheme, routing::Scheme::kHttp);
  EXPECT_EQ(updated->parts.host, "b.example");
  EXPECT_EQ(updated->parts.port, 8080);
  EXPECT_EQ(updated->parts.target, "/new?x=1");
  EXPECT_THAT(updated->custom_headers, ElementsAre(routing::Header{"X-Three", "3"}));
  EXPECT_EQ(updated->created_at_us, 1000);
  EXPECT_EQ(updated->updated_at_us, 2000);
  auto got = store->get(id);
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ(**got, *updated);

  // Clearing the headers.
  change.custom_headers.clear();
  auto cleared = store->update(change, 3000);
  ASSERT_TRUE(cleared.has_value()) << cleared.error().message;
  EXPECT_THAT(cleared->custom_headers, IsEmpty());
  EXPECT_EQ(cleared->updated_at_us, 3000);
}

TEST_F(StoreTest, UpdateAndRemoveOfMissingIdAreNotFound) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto s = sub(42, "business_updated", "https://a.example/");
  s.id = 12345;
  auto updated = store->update(s, 1000);
  ASSERT_FALSE(updated.has_value());
  EXPECT_EQ(updated.error().kind, StoreError::Kind::kNotFound);
  auto removed = store->remove(12345);
  ASSERT_FALSE(removed.has_value());
  EXPECT_EQ(removed.error().kind, StoreError::Kind::kNotFound);

  auto created = store->create({sub(42, "business_updated", "https://a.example/")}, 1000);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  ASSERT_TRUE(store->remove(created->at(0).id).has_value());
  auto twice = store->remove(created->at(0).id);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().kind, StoreError::Kind::kNotFound);
  auto gone = store->get(created->at(0).id);
  ASSERT_TRUE(gone.has_value()) << gone.error();
  EXPECT_FALSE(gone->has_value());
}

TEST_F(StoreTest, HeadersRoundTripWithOrderAndCase) {
  const std::vector<routing::Header> headers = {
      {"X-zulu", "last letter"}, {"x-Alpha", "MiXeD"}, {"X-UTF8", "d\xc3\xa9j\xc3\xa0 vu"}};
  std::int64_t id = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    // Another subscription with headers around it, so reads must not mix them up.
    auto created = store->create({sub(1, "business_created", "https://a.example/", {{"X-A", "a"}}),
                                  sub(42, "business_updated", "https://a.example/", headers),
                                  sub(2, "business_created", "https://a.example/", {{"X-B", "b"}})},
                                 1000);
    ASSERT_TRUE(created.has_value()) << created.error().message;
    id = created->at(1).id;
    EXPECT_EQ(created->at(1).custom_headers, headers);
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto got = store->get(id);
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->custom_headers, headers);
  auto page = store->list(42, 0, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  ASSERT_THAT(page->items, SizeIs(1));
  EXPECT_EQ(page->items[0].custom_headers, headers);
  auto all = store->all_subscriptions();
  ASSERT_TRUE(all.has_value()) << all.error();
  ASSERT_THAT(*all, SizeIs(3));
  EXPECT_THAT((*all)[0].custom_headers, ElementsAre(routing::Header{"X-A", "a"}));
  EXPECT_EQ((*all)[1].custom_headers, headers);
  EXPECT_THAT((*all)[2].custom_headers, ElementsAre(routing::Header{"X-B", "b"}));
}

TEST_F(StoreTest, AllSubscriptionsOrderedAndUnknownTypeNamed) {
  routing::EventCatalogue extended;
  ASSERT_TRUE(extended.add("invoice_paid").has_value());
  std::int64_t invoice_id = 0;
  std::vector<routing::Subscription> expected;
  {
    auto store = open_store(extended);
    ASSERT_NE(store, nullptr);
    for (std::int64_t org = 5; org >= 1; --org) {  // ids ascend while org_ids descend
      auto c = store->create(
          {sub(org, "lead_received", "https://a.example/" + std::to_string(org), {}, &extended)},
          org);
      ASSERT_TRUE(c.has_value()) << c.error().message;
      expected.push_back(c->at(0));
    }
    auto all = store->all_subscriptions();
    ASSERT_TRUE(all.has_value()) << all.error();
    EXPECT_EQ(*all, expected);

    auto invoice = store->create(
        {sub(3, "invoice_paid", "https://a.example/invoice", {{"X-K", "v"}}, &extended)}, 10);
    ASSERT_TRUE(invoice.has_value()) << invoice.error().message;
    invoice_id = invoice->at(0).id;
    expected.push_back(invoice->at(0));
    all = store->all_subscriptions();
    ASSERT_TRUE(all.has_value()) << all.error();
    EXPECT_EQ(*all, expected);
  }
  // Reopened without the extension: loading everything fails, naming the row and the type.
  auto store = open_store(catalogue_);
  ASSERT_NE(store, nullptr);
  auto all = store->all_subscriptions();
  ASSERT_FALSE(all.has_value());
  EXPECT_THAT(all.error(), HasSubstr(std::to_string(invoice_id)));
  EXPECT_THAT(all.error(), HasSubstr("invoice_paid"));
  auto got = store->get(invoice_id);
  ASSERT_FALSE(got.has_value());
  EXPECT_THAT(got.error(), HasSubstr("invoice_paid"));
}

// --- signing key ---

TEST_F(StoreTest, SigningKeyIsStableAcrossReopenAndParses) {
  std::string pem;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    auto first = store->signing_key_pem();
    ASSERT_TRUE(first.has_value()) << first.error();
    pem = *first;
    auto second = store->signing_key_pem();
    ASSERT_TRUE(second.has_value()) << second.error();
    EXPECT_EQ(*second, pem);
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto again = store->signing_key_pem();
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(*again, pem);
  EXPECT_THAT(pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  auto signer = engine::Signer::from_pem(pem);
  ASSERT_TRUE(signer.has_value()) << signer.error();
  EXPECT_EQ(signer->private_key_pem(), pem);
}

// --- pending deliveries ---

TEST_F(StoreTest, PendingDeliveriesRoundTrip) {
  using namespace std::string_literals;
  const std::vector<PendingDelivery> first = {
      {"evt-1", 42, "business_updated", "{\"type\":\"business_updated\",\"payload\":{}}", 7, 0, 0},
      {"evt-2", 43, "lead_received", "bin\0ary\xff\x00tail"s, 8, 3, 1'732'723'844'929},
      {"evt-3", 44, "business_created", "", 9, 5, -1},
  };
  const std::vector<PendingDelivery> second = {
      {"evt-4", 45, "message_created", "{}", 10, 1, 17},
  };
  ASSERT_EQ(first[1].body.size(), 13u);  // the embedded NULs are part of the body
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    auto none = store->pending();
    ASSERT_TRUE(none.has_value()) << none.error();
    EXPECT_THAT(*none, IsEmpty());
    ASSERT_TRUE(store->save_pending(first).has_value());
    ASSERT_TRUE(store->save_pending(second).has_value());
    ASSERT_TRUE(store->save_pending({}).has_value());
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto loaded = store->pending();
  ASSERT_TRUE(loaded.has_value()) << loaded.error();
  ASSERT_THAT(*loaded, SizeIs(4));
  for (std::size_t i = 0; i < first.size(); ++i) expect_same((*loaded)[i], first[i]);
  expect_same((*loaded)[3], second[0]);

  ASSERT_TRUE(store->clear_pending().has_value());
  auto cleared = store->pending();
  ASSERT_TRUE(cleared.has_value()) << cleared.error();
  EXPECT_THAT(*cleared, IsEmpty());
}

// --- two processes (daemon and CLI) on one directory ---

TEST_F(StoreTest, TwoStoresOnOneDirectorySeeEachOther) {
  auto daemon = open_store();
  auto cli = open_store();
  ASSERT_NE(daemon, nullptr);
  ASSERT_NE(cli, nullptr);

  auto created = cli->create_api_key(Role::kOrgAdmin, {42}, "from the CLI", 1000);
  ASSERT_TRUE(created.has_value()) << created.error();
  auto found = daemon->find_api_key(created->second);
  ASSERT_TRUE(found.has_value()) << found.error();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, created->first.id);

  ASSERT_TRUE(cli->revoke_api_key(created->first.id, 2000).has_value());
  auto revoked = daemon->find_api_key(created->second);
  ASSERT_TRUE(revoked.has_value()) << revoked.error();
  EXPECT_FALSE(revoked->has_value());

  auto sub_created = daemon->create({sub(42, "business_updated", "https://a.example/")}, 3000);
  ASSERT_TRUE(sub_created.has_value()) << sub_created.error().message;
  auto seen = cli->get(sub_created->at(0).id);
  ASSERT_TRUE(seen.has_value() && seen->has_value());
  EXPECT_EQ(**seen, sub_created->at(0));

  auto pem_daemon = daemon->signing_key_pem();
  auto pem_cli = cli->signing_key_pem();
  ASSERT_TRUE(pem_daemon.has_value() && pem_cli.has_value());
  EXPECT_EQ(*pem_daemon, *pem_cli);
}

// Several processes starting at once on a fresh directory (daemon, CLI): each connection
// migrates or sees the migration done, and they all end with the same single signing key.
TEST_F(StoreTest, ConcurrentFirstOpensAgreeOnSchemaAndSigningKey) {
  constexpr int kOpeners = 4;
  std::vector<std::string> pems(kOpeners);
  std::vector<std::string> errors(kOpeners);
  std::vector<int> versions(kOpeners, 0);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kOpeners; ++i) {
      threads.emplace_back([&, i] {
        const auto n = static_cast<std::size_t>(i);
        auto store = Store::open(data_, catalogue_);
        if (!store) {
          errors[n] = store.error();
          return;
        }
        versions[n] = (*store)->schema_version();
        auto pem = (*store)->signing_key_pem();
        if (pem) {
          pems[n] = *pem;
        } else {
          errors[n] = pem.error();
        }
      });
    }
  }
  for (int i = 0; i < kOpeners; ++i) {
    const auto n = static_cast<std::size_t>(i);
    EXPECT_EQ(errors[n], "") << "opener " << i;
    EXPECT_EQ(versions[n], Store::latest_schema_version());
    EXPECT_FALSE(pems[n].empty());
    EXPECT_EQ(pems[n], pems[0]);
  }
}

// --- time ---

TEST(TimestampTest, FormatsIso8601WithMicroseconds) {
  EXPECT_EQ(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp(1), "1970-01-01T00:00:00.000001Z");
  EXPECT_EQ(format_timestamp(1'732'723'844'929'678), "2024-11-27T16:10:44.929678Z");
  EXPECT_EQ(format_timestamp(951'782'400'000'000), "2000-02-29T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_timestamp(-1'000'000), "1969-12-31T23:59:59.000000Z");
  EXPECT_EQ(format_timestamp(-62'135'596'800'000'000), "0001-01-01T00:00:00.000000Z");
}

TEST(TimestampTest, NowIsMicrosecondsSinceEpoch) {
  const std::int64_t now = now_unix_us();
  EXPECT_GT(now, 1'700'000'000'000'000);  // after 2023-11
  EXPECT_LT(now, 4'102'444'800'000'000);  // before 2100
  EXPECT_THAT(format_timestamp(now),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                      "\\.[0-9]{6}Z"));
}

}  // namespace
}  // namespace fanout::daemon
