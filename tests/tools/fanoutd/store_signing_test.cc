// Standard Webhooks columns of fanoutd's store (migration 3, store_signing.cc): signing and the
// secret round-trip through create, update and every read; rotation replaces the secret, keeps
// updated_at, and reaches another Store on the same database through the change log.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "routing/catalogue.h"
#include "routing/subscription.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon {
namespace {

namespace fs = std::filesystem;
using routing::WebhookSigning;

class StoreSigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "fanoutd_store_signing.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    store_ = open();
    ASSERT_TRUE(store_);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::unique_ptr<Store> open() {
    auto s = Store::open(root_ / "data", catalogue_);
    EXPECT_TRUE(s.has_value()) << (s ? std::string() : s.error());
    return s ? std::move(*s) : nullptr;
  }
  routing::Subscription sub(std::int64_t org, WebhookSigning signing, std::string secret) {
    routing::SubscriptionSpec spec{org, "business_updated", "http://127.0.0.1:9/hook", {}};
    auto s = routing::validate(spec, catalogue_, {.allow_insecure_http = true});
    EXPECT_TRUE(s.has_value());
    s->signing = signing;
    s->webhook_secret = std::move(secret);
    return std::move(*s);
  }
  routing::Subscription get(std::int64_t id) {
    auto s = store_->get(id);
    EXPECT_TRUE(s && *s);
    return s && *s ? **s : routing::Subscription{};
  }

  fs::path root_;
  routing::EventCatalogue catalogue_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreSigningTest, SigningAndSecretComeBackFromEveryRead) {
  const std::string secret(32, '\x01');
  auto created = store_->create(
      {sub(1, WebhookSigning::kV1, secret), sub(2, WebhookSigning::kDefault, std::string())}, 100);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  const std::int64_t a = (*created)[0].id, b = (*created)[1].id;
  EXPECT_EQ(get(a).signing, WebhookSigning::kV1);
  EXPECT_EQ(get(a).webhook_secret, secret);
  EXPECT_EQ(get(b).signing, WebhookSigning::kDefault);
  EXPECT_EQ(get(b).webhook_secret, "") << "stored as NULL, read as none";
  auto all = store_->all_subscriptions();
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0], get(a));
  auto page = store_->list(1, 0, 10);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->items[0], get(a));
}

TEST_F(StoreSigningTest, UpdateChangesSigningAndKeepsTheSecret) {
  const std::string secret(24, 'k');
  auto created = store_->create({sub(1, WebhookSigning::kV1, secret)}, 100);
  ASSERT_TRUE(created.has_value());
  routing::Subscription s = (*created)[0];
  s.signing = WebhookSigning::kBoth;
  s.webhook_secret = "ignored by update";
  auto updated = store_->update(s, 200);
  ASSERT_TRUE(updated.has_value()) << updated.error().message;
  EXPECT_EQ(updated->signing, WebhookSigning::kBoth);
  EXPECT_EQ(updated->webhook_secret, secret);
  EXPECT_EQ(updated->updated_at_us, 200);
}

TEST_F(StoreSigningTest, RotationReplacesTheSecretEverywhere) {
  auto other = open();  // another process on the same database
  ASSERT_TRUE(other);
  std::int64_t seq = 0;
  ASSERT_TRUE(other->all_subscriptions(&seq).has_value());
  auto created = store_->create({sub(1, WebhookSigning::kV1, std::string(32, 'a'))}, 100);
  ASSERT_TRUE(created.has_value());
  const std::int64_t id = (*created)[0].id;
  auto changes = other->changes_since(seq);
  ASSERT_TRUE(changes.has_value());
  seq = changes->seq;

  const std::string fresh(32, 'b');
  auto rotated = store_->rotate_secret(id, fresh);
  ASSERT_TRUE(rotated.has_value()) << rotated.error().message;
  EXPECT_EQ(rotated->webhook_secret, fresh);
  EXPECT_EQ(rotated->updated_at_us, 100) << "the secret is not part of the Partoo config";
  EXPECT_EQ(get(id).webhook_secret, fresh);
  changes = other->changes_since(seq);
  ASSERT_TRUE(changes.has_value());
  ASSERT_EQ(changes->upserts.size(), 1u);
  EXPECT_EQ(changes->upserts[0].webhook_secret, fresh);
  EXPECT_EQ(changes->upserts[0].signing, WebhookSigning::kV1);
}

TEST_F(StoreSigningTest, RotatingAnUnknownWebhookIsNotFound) {
  auto r = store_->rotate_secret(12345, std::string(32, 'x'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, StoreError::Kind::kNotFound);
}

}  // namespace
}  // namespace fanout::daemon
