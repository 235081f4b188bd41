// fanoutd's API keys in its store (store_keys.cc): create, find, revoke and list; the key never
// stored in clear; the rules tying a role to organisations; role names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/tools/fanoutd/store_fixture.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// --- API keys ---

TEST_F(StoreTest, ApiKeyCreateFindRevokeList) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto admin = store->create_api_key(Role::kOrgAdmin, {42}, "ci admin", 1000);
  ASSERT_TRUE(admin.has_value()) << admin.error();
  const auto& [record, key] = *admin;
  ASSERT_EQ(key.size(), 3u + 43u);
  EXPECT_EQ(key.substr(0, 3), "fo_");
  EXPECT_TRUE(std::all_of(key.begin() + 3, key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  })) << key;
  EXPECT_GT(record.id, 0);
  EXPECT_EQ(record.role, Role::kOrgAdmin);
  EXPECT_THAT(record.orgs, ElementsAre(42));
  EXPECT_EQ(record.name, "ci admin");
  EXPECT_EQ(record.created_at_us, 1000);
  EXPECT_FALSE(record.revoked_at_us.has_value());

  auto other = store->create_api_key(Role::kIngest, {}, "", 2000);
  ASSERT_TRUE(other.has_value()) << other.error();
  EXPECT_NE(other->second, key);

  auto found = store->find_api_key(key);
  ASSERT_TRUE(found.has_value()) << found.error();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, record.id);
  EXPECT_EQ((*found)->role, Role::kOrgAdmin);
  EXPECT_THAT((*found)->orgs, ElementsAre(42));
  EXPECT_EQ((*found)->name, "ci admin");
  EXPECT_EQ((*found)->created_at_us, 1000);

  std::string wrong = key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  for (std::string_view bad : {std::string_view(wrong), std::string_view(),
                               std::string_view(key).substr(3), std::string_view("fo_")}) {
    auto none = store->find_api_key(bad);
    ASSERT_TRUE(none.has_value()) << none.error();
    EXPECT_FALSE(none->has_value()) << bad;
  }

  ASSERT_TRUE(store->revoke_api_key(record.id, 3000).has_value());
  auto revoked = store->find_api_key(key);
  ASSERT_TRUE(revoked.has_value()) << revoked.error();
  EXPECT_FALSE(revoked->has_value());
  auto twice = store->revoke_api_key(record.id, 4000);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().kind, StoreError::Kind::kNotFound);
  auto missing = store->revoke_api_key(999, 4000);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, StoreError::Kind::kNotFound);

  auto ingest = store->find_api_key(other->second);  // the other key still works
  ASSERT_TRUE(ingest.has_value() && ingest->has_value());
  EXPECT_EQ((*ingest)->role, Role::kIngest);
  EXPECT_THAT((*ingest)->orgs, IsEmpty());

  auto keys = store->api_keys();
  ASSERT_TRUE(keys.has_value()) << keys.error();
  ASSERT_THAT(*keys, SizeIs(2));
  EXPECT_EQ((*keys)[0].id, record.id);
  EXPECT_EQ((*keys)[0].revoked_at_us, std::optional<std::int64_t>(3000));
  EXPECT_EQ((*keys)[1].id, other->first.id);
  EXPECT_EQ((*keys)[1].role, Role::kIngest);
  EXPECT_EQ((*keys)[1].name, "");
  EXPECT_FALSE((*keys)[1].revoked_at_us.has_value());
}

TEST_F(StoreTest, ApiKeyNeverStoredInClear) {
  std::vector<std::string> keys;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 3; ++i) {
      auto created = store->create_api_key(Role::kProvider, {1, 2}, "k" + std::to_string(i), 1);
      ASSERT_TRUE(created.has_value()) << created.error();
      keys.push_back(created->second);
    }
    const std::string bytes = db_bytes();  // store open: the rows may be in the WAL only
    ASSERT_FALSE(bytes.empty());
    ASSERT_NE(bytes.find("k2"), std::string::npos);  // the search does see stored text
    for (const auto& key : keys) {
      EXPECT_EQ(bytes.find(key), std::string::npos);
      EXPECT_EQ(bytes.find(key.substr(3)), std::string::npos);
    }
  }
  const std::string bytes = db_bytes();  // closed: checkpointed into the database file
  for (const auto& key : keys) {
    EXPECT_EQ(bytes.find(key), std::string::npos);
    EXPECT_EQ(bytes.find(key.substr(3)), std::string::npos);
  }
}

TEST_F(StoreTest, ApiKeyRoleAndOrganisationRules) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  struct Case {
    Role role;
    std::vector<std::int64_t> orgs;
    const char* rule;
  };
  const Case refused[] = {
      {Role::kOrgAdmin, {}, "ORG_ADMIN"},  {Role::kOrgAdmin, {1, 2}, "ORG_ADMIN"},
      {Role::kOrgAdmin, {0}, "ORG_ADMIN"}, {Role::kOrgAdmin, {-3}, "ORG_ADMIN"},
      {Role::kProvider, {}, "PROVIDER"},   {Role::kProvider, {3, -1}, "PROVIDER"},
      {Role::kProvider, {0}, "PROVIDER"},  {Role::kIngest, {0}, "INGEST"},
      {Role::kIngest, {4, -1}, "INGEST"},
  };
  for (const auto& c : refused) {
    auto created = store->create_api_key(c.role, c.orgs, "x", 1);
    ASSERT_FALSE(created.has_value()) << c.rule;
    EXPECT_THAT(created.error(), HasSubstr(c.rule));
  }
  auto keys = store->api_keys();
  ASSERT_TRUE(keys.has_value()) << keys.error();
  EXPECT_THAT(*keys, IsEmpty());

  auto provider = store->create_api_key(Role::kProvider, {9, 3, 9, 5}, "p", 1);
  ASSERT_TRUE(provider.has_value()) << provider.error();
  EXPECT_THAT(provider->first.orgs, ElementsAre(3, 5, 9));
  auto found = store->find_api_key(provider->second);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->role, Role::kProvider);
  EXPECT_THAT((*found)->orgs, ElementsAre(3, 5, 9));
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role role : {Role::kOrgAdmin, Role::kProvider, Role::kIngest}) {
    EXPECT_EQ(parse_role(to_string(role)), role);
  }
  EXPECT_EQ(to_string(Role::kOrgAdmin), "ORG_ADMIN");
  EXPECT_EQ(to_string(Role::kProvider), "PROVIDER");
  EXPECT_EQ(to_string(Role::kIngest), "INGEST");
  EXPECT_FALSE(parse_role("org_admin").has_value());
  EXPECT_FALSE(parse_role("").has_value());
}

}  // namespace
}  // namespace fanout::daemon
