#include "engine/signer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/base64.h>
#include <openssl/curve25519.h>
#include <stdlib.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/peers.h"

namespace fanout::engine {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<std::uint8_t>;

Bytes from_hex(std::string_view hex) {
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(2 * i, 2)), nullptr, 16));
  }
  return out;
}

std::string_view as_text(const Bytes& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::span<const std::uint8_t, 32> as_key(const Bytes& b) {
  return std::span<const std::uint8_t, 32>(b.data(), 32);
}

// base64 by BoringSSL, independent of the libsodium encoder under test.
std::string boring_base64(const Bytes& b) {
  std::size_t size = 0;
  EVP_EncodedLength(&size, b.size());
  std::string out(size, '\0');
  out.resize(EVP_EncodeBlock(reinterpret_cast<std::uint8_t*>(out.data()), b.data(), b.size()));
  return out;
}

Bytes boring_unbase64(std::string_view text) {
  Bytes out(text.size());
  std::size_t size = 0;
  EXPECT_EQ(EVP_DecodeBase64(out.data(), &size, out.size(),
                             reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
            1);
  out.resize(size);
  return out;
}

std::string sign(const Signer& signer, std::string_view body) {
  std::string out(Signer::kSignatureBase64Size, '\0');
  signer.sign_base64(body, out.data());
  return out;
}

Bytes random_bytes(std::mt19937_64& rng, std::size_t n) {
  Bytes out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng());
  return out;
}

Signer from_seed_or_die(const Bytes& seed) {
  auto signer = Signer::from_seed(as_key(seed));
  EXPECT_TRUE(signer.has_value());
  return *std::move(signer);
}

struct Rfc8032Vector {
  const char* name;
  const char* seed;
  const char* public_key;
  const char* message;
  const char* signature;
};

// RFC 8032 §7.1, every Ed25519 vector.
const Rfc8032Vector kRfc8032[] = {
    {"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    {"TEST 1024", "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f5"
     "4e9f77b1e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37"
     "c93a1b270b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efc"
     "b8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b"
     "3b310da903401aa62100ab5d1a36553e06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573c"
     "b116dbefefd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204"
     "ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958"
     "d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
     "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f27088d78b7e883c8759d2c4f5c6"
     "5adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2"
     "cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128bab27af87a"
     "71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
     "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9"
     "b47acdb751fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb"
     "038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f672451"
     "7b65e614ad6808d6f6ee34dff7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
     "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e"
     "2ab47b57f7f7276cd419c17a3ca8e1b939ae49e488acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d"
     "5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e6aed3fb0"
     "f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a346f1a641f3b041"
     "e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa9"
     "33a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380db2eaaa707b4c4185"
     "c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8cac60c905c"
     "15fc910840b94c00a0b9d0",
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
     "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03"},
    {"TEST SHA(abc)", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"},
};

TEST(SignerTest, MatchesRfc8032Vectors) {
  ASSERT_EQ(std::string_view(kRfc8032[3].message).size(), 2 * 1023u);
  for (const auto& v : kRfc8032) {
    SCOPED_TRACE(v.name);
    const Bytes seed = from_hex(v.seed);
    const Bytes message = from_hex(v.message);
    const Signer signer = from_seed_or_die(seed);
    EXPECT_EQ(Bytes(signer.seed().begin(), signer.seed().end()), seed);
    EXPECT_EQ(Bytes(signer.public_key().begin(), signer.public_key().end()),
              from_hex(v.public_key));
    const std::string signature = sign(signer, as_text(message));
    EXPECT_EQ(boring_unbase64(signature), from_hex(v.signature));
    EXPECT_EQ(signature, boring_base64(from_hex(v.signature)));
    EXPECT_TRUE(Signer::verify_base64(signer.public_key(), as_text(message), signature));
  }
}

TEST(SignerTest, WritesExactly88CharsAndNoNul) {
  const Signer signer = Signer::generate();
  std::array<char, 100> out;
  out.fill('#');
  signer.sign_base64("{}", out.data());
  EXPECT_EQ(std::string_view(out.data() + 88, 12), std::string(12, '#'));
  EXPECT_EQ(out[86], '=');
  EXPECT_EQ(out[87], '=');
  EXPECT_EQ(sign(signer, std::string_view()), sign(signer, ""));
}

// The header must not depend on which library signs: same key, same body, same bytes.
TEST(SignerTest, SignsByteForByteLikeBoringssl) {
  std::mt19937_64 rng(20240517);
  for (int key = 0; key < 8; ++key) {
    const Bytes seed = random_bytes(rng, 32);
    const Signer signer = from_seed_or_die(seed);
    std::uint8_t boring_public[32];
    std::uint8_t boring_private[64];
    ED25519_keypair_from_seed(boring_public, boring_private, seed.data());
    ASSERT_EQ(Bytes(std::begin(boring_public), std::end(boring_public)),
              Bytes(signer.public_key().begin(), signer.public_key().end()));
    for (const std::size_t size : {0u, 1u, 600u, 65536u}) {
      SCOPED_TRACE(testing::Message() << "key " << key << ", body " << size << " B");
      const Bytes body = random_bytes(rng, size);
      Bytes boring_signature(64);
      ASSERT_EQ(ED25519_sign(boring_signature.data(), body.data(), body.size(), boring_private), 1);
      const std::string ours = sign(signer, as_text(body));
      EXPECT_EQ(ours, boring_base64(boring_signature));
      EXPECT_EQ(
          ED25519_verify(body.data(), body.size(), boring_unbase64(ours).data(), boring_public), 1);
      EXPECT_TRUE(Signer::verify_base64(signer.public_key(), as_text(body), ours));
    }
  }
}

TEST(SignerTest, BothVerifiersRefuseAFlippedBodyOrSignatureBit) {
  std::mt19937_64 rng(7);
  const Signer signer = from_seed_or_die(random_bytes(rng, 32));
  const auto public_key = signer.public_key();
  for (const std::size_t size : {1u, 600u, 65536u}) {
    SCOPED_TRACE(testing::Message() << "body " << size << " B");
    const Bytes body = random_bytes(rng, size);
    const std::string good = sign(signer, as_text(body));
    const Bytes raw = boring_unbase64(good);
    ASSERT_EQ(raw.size(), 64u);

    for (const std::size_t bit : {std::size_t{0}, size * 4 + 3, size * 8 - 1}) {
      Bytes flipped = body;
      flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      EXPECT_FALSE(Signer::verify_base64(public_key, as_text(flipped), good)) << "bit " << bit;
      EXPECT_EQ(ED25519_verify(flipped.data(), flipped.size(), raw.data(), public_key.data()), 0)
          << "bit " << bit;
    }
    for (std::size_t bit = 0; bit < 512; ++bit) {
      Bytes flipped = raw;
      flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      EXPECT_FALSE(Signer::verify_base64(public_key, as_text(body), boring_base64(flipped)))
          << "bit " << bit;
      EXPECT_EQ(ED25519_verify(body.data(), body.size(), flipped.data(), public_key.data()), 0)
          << "bit " << bit;
    }
  }
}

TEST(SignerTest, VerifyRefusesMalformedSignatures) {
  const Signer signer = Signer::generate();
  const Signer other = Signer::generate();
  const std::string good = sign(signer, "body");
  ASSERT_TRUE(Signer::verify_base64(signer.public_key(), "body", good));
  EXPECT_FALSE(Signer::verify_base64(other.public_key(), "body", good));
  EXPECT_FALSE(Signer::verify_base64(signer.public_key(), "body", good.substr(0, 87)));
  EXPECT_FALSE(Signer::verify_base64(signer.public_key(), "body", good + "="));
  EXPECT_FALSE(Signer::verify_base64(signer.public_key(), "body", ""));
  std::string bad_char = good;
  bad_char[10] = '*';
  EXPECT_FALSE(Signer::verify_base64(signer.public_key(), "body", bad_char));
  std::string url_safe = good;
  for (char& c : url_safe) c = c == '+' ? '-' : c == '/' ? '_' : c;
  if (url_safe != good) {
    EXPECT_FALSE(Signer::verify_base64(signer.public_key(), "body", url_safe));
  }
}

TEST(SignerTest, GeneratesDistinctKeysThatRoundTripThroughPem) {
  const Signer a = Signer::generate();
  const Signer b = Signer::generate();
  EXPECT_FALSE(std::ranges::equal(a.seed(), b.seed()));
  const std::string pem = a.private_key_pem();
  EXPECT_THAT(pem, ::testing::StartsWith("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
  EXPECT_THAT(pem, ::testing::EndsWith("\n-----END PRIVATE KEY-----\n"));
  auto loaded = Signer::from_pem(pem);
  ASSERT_TRUE(loaded.has_value()) << loaded.error();
  EXPECT_TRUE(std::ranges::equal(loaded->seed(), a.seed()));
  EXPECT_TRUE(std::ranges::equal(loaded->public_key(), a.public_key()));
  EXPECT_EQ(loaded->public_key_pem(), a.public_key_pem());
  EXPECT_EQ(sign(*loaded, "x"), sign(a, "x"));
  EXPECT_THAT(a.public_key_pem(), ::testing::MatchesRegex("-----BEGIN PUBLIC KEY-----\n"
                                                          "MCowBQYDK2VwAyEA[A-Za-z0-9+/]{43}=\n"
                                                          "-----END PUBLIC KEY-----\n"));
}

TEST(SignerTest, CopiesAndMovesKeepTheKey) {
  const Signer original = Signer::generate();
  const std::string expected = sign(original, "body");
  Signer copy = original;
  EXPECT_EQ(sign(copy, "body"), expected);
  Signer moved = std::move(copy);
  EXPECT_EQ(sign(moved, "body"), expected);
  Signer assigned = Signer::generate();
  assigned = moved;
  EXPECT_EQ(sign(assigned, "body"), expected);
}

// sign_base64 is const and allocation-free: workers share one Signer.
TEST(SignerTest, SignsConcurrentlyFromManyThreads) {
  const Signer signer = Signer::generate();
  const std::string body(600, 'b');
  const std::string expected = sign(signer, body);
  std::vector<std::thread> threads;
  std::array<int, 4> mismatches{};
  for (std::size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) mismatches[t] += sign(signer, body) != expected ? 1 : 0;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, (std::array<int, 4>{}));
}

// A well-formed key, written the way openssl writes one, for the refusal cases below.
const char kGoodPem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
    "-----END PRIVATE KEY-----\n";

std::string refusal(std::string_view pem) {
  auto signer = Signer::from_pem(pem);
  EXPECT_FALSE(signer.has_value()) << pem;
  return signer.has_value() ? std::string() : signer.error();
}

TEST(SignerTest, AcceptsPemWithCrlfAndSurroundingWhitespace) {
  const auto plain = Signer::from_pem(kGoodPem);
  ASSERT_TRUE(plain.has_value()) << plain.error();
  EXPECT_EQ(plain->private_key_pem(), kGoodPem);
  EXPECT_EQ(boring_base64(Bytes(plain->seed().begin(), plain->seed().end())),
            "1O5y2/kTWErVttjx92n4rTr+fCjL8dT74Jeoj0R1WEI=");
  const auto crlf = Signer::from_pem(
      "\n  -----BEGIN PRIVATE KEY-----\r\n"
      "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwo\r\ny/HU++CXqI9EdVhC\r\n"
      "-----END PRIVATE KEY-----\r\n\r\n");
  ASSERT_TRUE(crlf.has_value()) << crlf.error();
  EXPECT_TRUE(std::ranges::equal(crlf->seed(), plain->seed()));
}

TEST(SignerTest, RefusesMalformedPemNamingTheProblem) {
  const std::string good = kGoodPem;
  EXPECT_THAT(refusal(""), HasSubstr("empty"));
  EXPECT_THAT(refusal("  \n"), HasSubstr("empty"));
  EXPECT_THAT(refusal("garbage \x01\x02 not a key"), HasSubstr("not a PEM key"));
  EXPECT_THAT(refusal("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC"),
              HasSubstr("not a PEM key"));
  EXPECT_THAT(refusal("-----BEGIN PRIVATE KEY\nMC4C\n"), HasSubstr("malformed"));
  EXPECT_THAT(refusal(good.substr(0, good.find("-----END"))), HasSubstr("no '-----END PRIVATE"));
  EXPECT_THAT(refusal(good + good), HasSubstr("after the PEM"));

  std::string bad_char = good;
  bad_char[40] = '*';
  EXPECT_THAT(refusal(bad_char), HasSubstr("not valid base64"));
  // Cut mid-quantum: no longer base64 at all.
  std::string cut = good;
  cut.erase(cut.find("\n-----END") - 3, 3);
  EXPECT_THAT(refusal(cut), HasSubstr("not valid base64"));
  // Cut on a 4-char boundary: valid base64, but the DER inside is short.
  cut = good;
  cut.erase(cut.find("\n-----END") - 4, 4);
  EXPECT_THAT(refusal(cut), HasSubstr("truncated or malformed DER"));
  EXPECT_THAT(refusal("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
              HasSubstr("truncated or malformed DER"));
  // Valid base64 of something that is not DER at all.
  EXPECT_THAT(refusal("-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n"),
              HasSubstr("not a PKCS#8"));

  for (const char* label : {"PUBLIC KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "CERTIFICATE"}) {
    std::string relabelled = good;
    relabelled.replace(relabelled.find("PRIVATE KEY"), 11, label);
    relabelled.replace(relabelled.rfind("PRIVATE KEY"), 11, label);
    EXPECT_THAT(refusal(relabelled),
                HasSubstr(std::string("PEM label is '") + label + "', expected 'PRIVATE KEY'"));
  }
}

TEST(SignerTest, RefusesOtherEd25519Pkcs8Forms) {
  const Bytes seed(32, 0x11);
  const Signer signer = from_seed_or_die(seed);
  // RFC 8410 §7 OneAsymmetricKey v2: version 1 and the public key attached.
  Bytes der = from_hex("3051020101300506032b657004220420");
  der.insert(der.end(), seed.begin(), seed.end());
  const Bytes public_key_header = from_hex("812100");
  der.insert(der.end(), public_key_header.begin(), public_key_header.end());
  der.insert(der.end(), signer.public_key().begin(), signer.public_key().end());
  const std::string pem =
      "-----BEGIN PRIVATE KEY-----\n" + boring_base64(der) + "\n-----END PRIVATE KEY-----\n";
  EXPECT_THAT(refusal(pem), HasSubstr("unsupported Ed25519 PKCS#8 form: 83 bytes"));
}

// Keys and signatures made by the openssl command line (OpenSSL 3), in a temporary directory.
class SignerOpensslTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("openssl version >/dev/null 2>&1") != 0) FANOUT_MISSING_PEER("openssl");
    std::string pattern = ::testing::TempDir() + "/signer_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string path(std::string_view name) const { return (dir_ / name).string(); }

  // Runs `openssl <args>` in the temporary directory; true on exit status 0.
  bool openssl(const std::string& args) const {
    const std::string command =
        "cd '" + dir_.string() + "' && openssl " + args + " >openssl.log 2>&1";
    return std::system(command.c_str()) == 0;
  }

  std::string read(std::string_view name) const {
    std::ifstream in(path(name), std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  void write(std::string_view name, std::string_view content) const {
    std::ofstream out(path(name), std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }

  std::filesystem::path dir_;
};

TEST_F(SignerOpensslTest, LoadsGenpkeyKeyAndWritesTheSamePems) {
  ASSERT_TRUE(openssl("genpkey -algorithm ed25519 -out k.pem"));
  ASSERT_TRUE(openssl("pkey -in k.pem -pubout -out pub.pem"));
  const auto signer = Signer::from_pem(read("k.pem"));
  ASSERT_TRUE(signer.has_value()) << signer.error();
  EXPECT_EQ(signer->public_key_pem(), read("pub.pem"));
  EXPECT_EQ(signer->private_key_pem(), read("k.pem"));
}

TEST_F(SignerOpensslTest, SignsLikePkeyutlAndPkeyutlVerifiesUs) {
  ASSERT_TRUE(openssl("genpkey -algorithm ed25519 -out k.pem"));
  ASSERT_TRUE(openssl("pkey -in k.pem -pubout -out pub.pem"));
  const auto signer = Signer::from_pem(read("k.pem"));
  ASSERT_TRUE(signer.has_value()) << signer.error();
  std::mt19937_64 rng(42);
  // OpenSSL 3.0's pkeyutl cannot sign an empty input, so bodies start at 1 byte.
  for (const std::size_t size : {1u, 600u, 65536u}) {
    SCOPED_TRACE(testing::Message() << "body " << size << " B");
    const Bytes body = random_bytes(rng, size);
    write("body", as_text(body));
    ASSERT_TRUE(openssl("pkeyutl -sign -rawin -inkey k.pem -in body -out sig"));
    const std::string theirs = read("sig");
    ASSERT_EQ(theirs.size(), 64u);
    const std::string ours = sign(*signer, as_text(body));
    EXPECT_EQ(ours, boring_base64(Bytes(theirs.begin(), theirs.end())));

    const Bytes raw = boring_unbase64(ours);
    write("ours.sig", as_text(raw));
    EXPECT_TRUE(openssl("pkeyutl -verify -rawin -pubin -inkey pub.pem -in body -sigfile ours.sig"));
  }
}

TEST_F(SignerOpensslTest, OpensslLoadsOurKeys) {
  const Signer signer = Signer::generate();
  write("ours.pem", signer.private_key_pem());
  ASSERT_TRUE(openssl("pkey -in ours.pem -pubout -out ours.pub.pem"));
  EXPECT_EQ(read("ours.pub.pem"), signer.public_key_pem());
  write("ours.pub.pem", signer.public_key_pem());
  ASSERT_TRUE(openssl("pkey -pubin -in ours.pub.pem -out again.pub.pem"));
  EXPECT_EQ(read("again.pub.pem"), signer.public_key_pem());
}

TEST_F(SignerOpensslTest, RefusesKeysOfOtherAlgorithmsByName) {
  const std::pair<const char*, const char*> cases[] = {
      {"genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k.pem",
       "an EC key (id-ecPublicKey), algorithm OID 1.2.840.10045.2.1"},
      {"genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out k.pem",
       "an RSA key (rsaEncryption), algorithm OID 1.2.840.113549.1.1.1"},
      {"genpkey -algorithm x25519 -out k.pem", "an X25519 key, algorithm OID 1.3.101.110"},
      {"genpkey -algorithm ed448 -out k.pem", "an Ed448 key, algorithm OID 1.3.101.113"},
  };
  for (const auto& [command, expected] : cases) {
    SCOPED_TRACE(command);
    ASSERT_TRUE(openssl(command));
    const std::string error = refusal(read("k.pem"));
    EXPECT_THAT(error, HasSubstr(std::string("the key is ") + expected + ", not Ed25519"));
    EXPECT_THAT(error, HasSubstr("openssl genpkey -algorithm ed25519"));
  }
}

TEST_F(SignerOpensslTest, RefusesTraditionalEncryptedAndPublicPems) {
  ASSERT_TRUE(openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem"));
  ASSERT_TRUE(openssl("pkey -in ec.pem -traditional -out ec-traditional.pem"));
  EXPECT_THAT(refusal(read("ec-traditional.pem")),
              HasSubstr("PEM label is 'EC PRIVATE KEY', expected 'PRIVATE KEY'"));

  ASSERT_TRUE(openssl("genpkey -algorithm ed25519 -out k.pem"));
  ASSERT_TRUE(openssl("pkcs8 -topk8 -in k.pem -passout pass:secret -out encrypted.pem"));
  EXPECT_THAT(refusal(read("encrypted.pem")), HasSubstr("encrypted keys are not supported"));

  ASSERT_TRUE(openssl("pkey -in k.pem -pubout -out pub.pem"));
  EXPECT_THAT(refusal(read("pub.pem")),
              HasSubstr("PEM label is 'PUBLIC KEY', expected 'PRIVATE KEY'"));
}

}  // namespace
}  // namespace fanout::engine
