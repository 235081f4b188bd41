// Standard Webhooks signing (engine/standard_webhooks.h): known answers for v1, Ed25519 checks
// for v1a, the secret's text form, and the engine sending the three headers on each attempt.
#include "engine/standard_webhooks.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"

namespace fanout::engine {
namespace {

using fanout::testing::Received;
using fanout::testing::Receiver;

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string decode_b64(std::string_view text) {
  std::string out(text.size(), '\0');
  std::size_t size = 0;
  EXPECT_EQ(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                              text.size(), nullptr, &size, nullptr, sodium_base64_VARIANT_ORIGINAL),
            0)
      << text;
  out.resize(size);
  return out;
}

// The entry of `version` ("v1", "v1a") in a webhook-signature value, or "" when absent.
std::string entry(std::string_view header, std::string_view version) {
  while (!header.empty()) {
    const std::size_t space = header.find(' ');
    const std::string_view e = header.substr(0, space);
    if (e.size() > version.size() && e.substr(0, version.size()) == version &&
        e[version.size()] == ',') {
      return std::string(e.substr(version.size() + 1));
    }
    if (space == std::string_view::npos) break;
    header.remove_prefix(space + 1);
  }
  return {};
}

// The example of the Standard Webhooks specification and its reference libraries.
constexpr std::string_view kSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view kSpecContent =
    "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}";
constexpr std::string_view kSpecV1 = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

TEST(StandardWebhooksTest, HmacMatchesTheSpecificationsExample) {
  const auto secret = decode_webhook_secret(kSpecSecret);
  ASSERT_TRUE(secret.has_value());
  EXPECT_EQ(secret->size(), 24u);
  char out[kHmacBase64Size];
  hmac_sha256_base64(bytes(*secret), kSpecContent, out);
  EXPECT_EQ(std::string_view(out, sizeof out), kSpecV1);
}

TEST(StandardWebhooksTest, HmacMatchesAKnownAnswerForA32ByteSecret) {
  // Python: base64(hmac.new(bytes(range(32)), CONTENT, sha256).digest())
  std::string secret;
  for (int i = 0; i < 32; ++i) secret.push_back(static_cast<char>(i));
  EXPECT_EQ(encode_webhook_secret(secret), "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  char out[kWebhookSignatureMaxSize];
  const std::size_t n = write_webhook_signature(
      true, false, bytes(secret), nullptr,
      R"(evt-1.1700000000.{"type":"business_updated","payload":{"id":"b1"}})", out);
  EXPECT_EQ(std::string_view(out, n), "v1,rrAoFGg7dSE8hQa9K8C2FYp0wbc8sSi4LPltbdi1yu4=");
}

TEST(StandardWebhooksTest, V1aIsAnEd25519SignatureOfTheSignedContent) {
  const Signer key = Signer::generate();
  char out[kWebhookSignatureMaxSize];
  const std::size_t n = write_webhook_signature(false, true, {}, &key, kSpecContent, out);
  const std::string_view header(out, n);
  ASSERT_EQ(n, 4 + Signer::kSignatureBase64Size);
  const std::string sig = decode_b64(entry(header, "v1a"));
  ASSERT_EQ(sig.size(), crypto_sign_BYTES);
  const auto content = bytes(kSpecContent);
  EXPECT_EQ(crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig.data()),
                                        content.data(), content.size(), key.public_key().data()),
            0);
  const std::string other = std::string(kSpecContent) + " ";
  EXPECT_NE(crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig.data()),
                                        bytes(other).data(), other.size(), key.public_key().data()),
            0);
  // The same bytes X-Partoo-Signature-v1 would carry for that content (one key, one algorithm).
  char partoo[Signer::kSignatureBase64Size];
  key.sign_base64(kSpecContent, partoo);
  EXPECT_EQ(entry(header, "v1a"), std::string_view(partoo, sizeof partoo));
}

TEST(StandardWebhooksTest, BothPutsV1FirstSeparatedByASpace) {
  const Signer key = Signer::generate();
  const auto secret = decode_webhook_secret(kSpecSecret);
  char out[kWebhookSignatureMaxSize];
  const std::size_t n =
      write_webhook_signature(true, true, bytes(*secret), &key, kSpecContent, out);
  EXPECT_EQ(n, kWebhookSignatureMaxSize);
  const std::string_view header(out, n);
  EXPECT_EQ(header.substr(0, 3 + kHmacBase64Size), "v1," + std::string(kSpecV1));
  EXPECT_EQ(header[3 + kHmacBase64Size], ' ');
  EXPECT_FALSE(entry(header, "v1a").empty());
}

TEST(StandardWebhooksTest, NothingToSignWithWritesNothing) {
  char out[kWebhookSignatureMaxSize];
  EXPECT_EQ(write_webhook_signature(true, false, {}, nullptr, kSpecContent, out), 0u)
      << "v1 without a secret";
  EXPECT_EQ(write_webhook_signature(false, true, {}, nullptr, kSpecContent, out), 0u)
      << "v1a without a key";
}

TEST(StandardWebhooksTest, SecretsAreRandomAndRoundTripThroughTheirText) {
  const std::string a = new_webhook_secret(), b = new_webhook_secret();
  EXPECT_EQ(a.size(), kWebhookSecretBytes);
  EXPECT_NE(a, b);
  const std::string text = encode_webhook_secret(a);
  EXPECT_EQ(text.substr(0, 6), "whsec_");
  EXPECT_EQ(decode_webhook_secret(text), a);
  EXPECT_EQ(decode_webhook_secret(text.substr(6)), a) << "the prefix is optional";
}

TEST(StandardWebhooksTest, DecodingRefusesBadSecrets) {
  EXPECT_FALSE(decode_webhook_secret(""));
  EXPECT_FALSE(decode_webhook_secret("whsec_"));
  EXPECT_FALSE(decode_webhook_secret("whsec_not base64!"));
  EXPECT_FALSE(decode_webhook_secret(encode_webhook_secret(std::string(23, 'x')))) << "too short";
  EXPECT_FALSE(decode_webhook_secret(encode_webhook_secret(std::string(65, 'x')))) << "too long";
  EXPECT_TRUE(decode_webhook_secret(encode_webhook_secret(std::string(64, 'x'))));
}

// --- the engine sends them ----------------------------------------------------------------------

class StandardWebhooksEngineTest : public fanout::test_support::EngineFixture {
 protected:
  void start(routing::WebhookSigning daemon, routing::WebhookSigning own, std::uint16_t port,
             bool partoo_signature = true) {
    EngineOptions o = fanout::test_support::loopback_engine_options();
    o.signing_key_pem = key_.private_key_pem();
    o.partoo_signature = partoo_signature;
    o.standard_webhooks = daemon;
    create(std::move(o));
    ASSERT_TRUE(engine_);
    routing::SubscriptionSpec spec{
        42, "business_updated", "http://127.0.0.1:" + std::to_string(port) + "/hook", {}};
    auto s = engine_->upsert(7, spec);
    ASSERT_TRUE(s.has_value());
    s->signing = own;
    s->webhook_secret = secret_;
    engine_->upsert(*s);
    run();
  }
  // Checks the three headers of `r` against the body and keys; the signed content's timestamp;
  // X-Partoo-Signature-v1 verifying, or absent when not `partoo`.
  void expect_signed(const Received& r, bool v1, bool v1a, bool partoo = true) {
    ASSERT_EQ(r.headers.count("webhook-id"), 1u);
    EXPECT_EQ(r.headers.at("webhook-id"), r.headers.at("x-partoo-event-id"));
    const std::string& ts = r.headers.at("webhook-timestamp");
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    EXPECT_LE(std::abs(std::stoll(ts) - now), 60) << ts;
    const std::string content = r.headers.at("webhook-id") + "." + ts + "." + r.body;
    const std::string& header = r.headers.at("webhook-signature");
    if (v1) {
      char mac[kHmacBase64Size];
      hmac_sha256_base64(bytes(secret_), content, mac);
      EXPECT_EQ(entry(header, "v1"), std::string_view(mac, sizeof mac)) << header;
    } else {
      EXPECT_EQ(entry(header, "v1"), "") << header;
    }
    if (v1a) {
      const std::string sig = decode_b64(entry(header, "v1a"));
      ASSERT_EQ(sig.size(), crypto_sign_BYTES) << header;
      EXPECT_EQ(crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig.data()),
                                            bytes(content).data(), content.size(),
                                            key_.public_key().data()),
                0);
    } else {
      EXPECT_EQ(entry(header, "v1a"), "") << header;
    }
    if (!partoo) {
      EXPECT_EQ(r.headers.count("x-partoo-signature-v1"), 0u);
      return;
    }
    // Partoo's header is unchanged: Ed25519 of the body alone.
    EXPECT_TRUE(
        Signer::verify_base64(key_.public_key(), r.body, r.headers.at("x-partoo-signature-v1")));
  }
  static std::string event(const std::string& id) {
    return fanout::test_support::event_json(42, id, R"({"business":{"id":"b1"}})");
  }
  const Signer key_ = Signer::generate();
  const std::string secret_ = new_webhook_secret();
};

// Without the Partoo signature (EngineOptions::partoo_signature = false) the key still signs
// v1a, and X-Partoo-Signature-v1 is not sent.
TEST_F(StandardWebhooksEngineTest, V1aWithoutThePartooSignature) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(routing::WebhookSigning::kV1a, routing::WebhookSigning::kDefault, rx.port(),
        /*partoo_signature=*/false);
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("no-partoo")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  expect_signed(got[0], /*v1=*/false, /*v1a=*/true, /*partoo=*/false);
}

TEST_F(StandardWebhooksEngineTest, OffSendsOnlyPartoosHeaders) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(routing::WebhookSigning::kOff, routing::WebhookSigning::kDefault, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("off")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].headers.count("webhook-id"), 0u);
  EXPECT_EQ(got[0].headers.count("webhook-timestamp"), 0u);
  EXPECT_EQ(got[0].headers.count("webhook-signature"), 0u);
  EXPECT_TRUE(Signer::verify_base64(key_.public_key(), got[0].body,
                                    got[0].headers.at("x-partoo-signature-v1")));
}

TEST_F(StandardWebhooksEngineTest, BothAreSignedAgainOnEveryAttempt) {
  Receiver rx([](const Received&, std::size_t i) { return i < 2 ? 503 : 200; });
  start(routing::WebhookSigning::kBoth, routing::WebhookSigning::kDefault, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("retried")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 3u);
  for (const Received& r : got) expect_signed(r, true, true);
  EXPECT_EQ(got[0].body, got[2].body);
}

TEST_F(StandardWebhooksEngineTest, TheSubscriptionsOwnSettingOverridesTheEngines) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(routing::WebhookSigning::kOff, routing::WebhookSigning::kV1, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("own")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  expect_signed(got[0], true, false);
}

TEST_F(StandardWebhooksEngineTest, OffOnTheSubscriptionWinsOverTheEngine) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(routing::WebhookSigning::kBoth, routing::WebhookSigning::kOff, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("own-off")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].headers.count("webhook-signature"), 0u);
}

TEST_F(StandardWebhooksEngineTest, V1aAloneWhenTheEngineSaysSo) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(routing::WebhookSigning::kV1a, routing::WebhookSigning::kDefault, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("v1a")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  expect_signed(got[0], false, true);
}

}  // namespace
}  // namespace fanout::engine
