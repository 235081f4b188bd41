// transport/tls.{h,cc} in memory, no socket: a client TlsSession and a server TlsSession whose
// ciphertext the test carries from one to the other. Contexts that cannot be made (a missing
// file, a key of another certificate), the handshake with ALPN (h2, http/1.1, none in common),
// plaintext both ways, close_notify, and verification: an unknown CA, a wrong host name, an IP
// literal checked against the certificate, and the insecure mode that checks nothing. The
// certificates come from the openssl tool (tests/transport/test_peers.h), made once.
#include "transport/tls.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/peers.h"
#include "tests/transport/test_peers.h"

namespace fanout::transport {
namespace {

// Moves what `from` has to send into `to`; false when it had nothing.
bool carry(TlsSession& from, TlsSession& to) {
  const std::size_t n = from.output_size();
  if (n == 0) return false;
  std::vector<std::uint8_t> bytes(n);
  bytes.resize(from.take_output(bytes.data(), bytes.size()));
  to.feed(bytes.data(), bytes.size());
  return true;
}

struct HandshakeResult {
  TlsStatus client = TlsStatus::kWantInput;
  TlsStatus server = TlsStatus::kWantInput;
};

// Drives both handshakes until each is done or failed, or nothing moves any more.
HandshakeResult handshake(TlsSession& client, TlsSession& server) {
  HandshakeResult o;
  for (int round = 0; round < 16; ++round) {
    if (o.client == TlsStatus::kWantInput) o.client = client.handshake();
    const bool to_server = carry(client, server);
    if (o.server == TlsStatus::kWantInput) o.server = server.handshake();
    const bool to_client = carry(server, client);
    const bool settled = o.client != TlsStatus::kWantInput && o.server != TlsStatus::kWantInput;
    if (settled || (!to_server && !to_client)) break;
  }
  return o;
}

// All the plaintext `s` has, after the peer's records were fed to it.
std::string read_all(TlsSession& s, TlsStatus* last = nullptr) {
  std::string out;
  std::uint8_t buf[4096];
  for (;;) {
    std::size_t n = 0;
    const TlsStatus st = s.read_plaintext(buf, sizeof buf, &n);
    if (st != TlsStatus::kOk) {
      if (last != nullptr) *last = st;
      return out;
    }
    out.append(reinterpret_cast<const char*>(buf), n);
  }
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fanout::testing::ScratchDir;
    pki_ = fanout::testing::make_test_pki(*dir_);
  }
  static void TearDownTestSuite() {
    for (auto& c : clients_) c.reset();
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!pki_) FANOUT_MISSING_PEER("openssl");
  }

  static std::string file(const std::string& name) { return dir_->file(name); }

  // A server context with certificate `cert` (server: localhost and 127.0.0.1; wrong:
  // wrong.example only).
  static std::shared_ptr<const TlsContext> server_context(const std::string& cert = "server",
                                                          bool h2 = true, bool http1 = true) {
    TlsServerOptions o;
    o.cert_file = file(cert + ".pem");
    o.key_file = file(cert + ".key");
    o.accept_h2 = h2;
    o.accept_http1 = http1;
    auto c = TlsContext::server(o);
    EXPECT_TRUE(c.has_value()) << c.error();
    return c ? *c : nullptr;
  }

  // Made once per combination (loading the system trust store is the slow part); a context is
  // immutable and shared by every session made from it.
  static std::shared_ptr<const TlsContext> client_context(bool trust_test_ca = true,
                                                          bool verify = true, bool h2 = true) {
    auto& cached = clients_[(trust_test_ca ? 4U : 0U) + (verify ? 2U : 0U) + (h2 ? 1U : 0U)];
    if (cached) return cached;
    TlsClientOptions o;
    o.verify_peer = verify;
    if (trust_test_ca) o.ca_file = file("ca.pem");
    o.offer_h2 = h2;
    auto c = TlsContext::client(o);
    EXPECT_TRUE(c.has_value()) << c.error();
    if (c) cached = *c;
    return cached;
  }

  // A client session for `host` and a server session, ready for handshake().
  void sessions(std::shared_ptr<const TlsContext> client_ctx, std::string_view host,
                std::shared_ptr<const TlsContext> server_ctx) {
    ASSERT_NE(client_ctx, nullptr);
    ASSERT_NE(server_ctx, nullptr);
    auto c = TlsSession::client(std::move(client_ctx), host);
    ASSERT_TRUE(c.has_value()) << c.error();
    auto s = TlsSession::server(std::move(server_ctx));
    ASSERT_TRUE(s.has_value()) << s.error();
    client_ = std::move(*c);
    server_ = std::move(*s);
  }

  static fanout::testing::ScratchDir* dir_;
  static bool pki_;
  static std::array<std::shared_ptr<const TlsContext>, 8> clients_;
  std::unique_ptr<TlsSession> client_;
  std::unique_ptr<TlsSession> server_;
};

fanout::testing::ScratchDir* TlsTest::dir_ = nullptr;
bool TlsTest::pki_ = false;
std::array<std::shared_ptr<const TlsContext>, 8> TlsTest::clients_;

// --- Contexts
// -------------------------------------------------------------------------------------

TEST_F(TlsTest, ServerContextNamesTheCertificateItCannotLoad) {
  TlsServerOptions o;
  o.cert_file = file("missing.pem");
  o.key_file = file("server.key");
  auto c = TlsContext::server(o);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().find("cannot load the certificate " + o.cert_file), std::string::npos)
      << c.error();
}

TEST_F(TlsTest, ServerContextRefusesTheKeyOfAnotherCertificate) {
  TlsServerOptions o;
  o.cert_file = file("server.pem");
  o.key_file = file("wrong.key");
  auto c = TlsContext::server(o);
  ASSERT_FALSE(c.has_value());
  // BoringSSL compares the key with the certificate as it loads it.
  EXPECT_NE(c.error().find(o.key_file), std::string::npos) << c.error();
  EXPECT_NE(c.error().find("KEY_VALUES_MISMATCH"), std::string::npos) << c.error();
}

TEST_F(TlsTest, ClientContextNamesTheCaFileItCannotLoad) {
  TlsClientOptions o;
  o.ca_file = file("missing-ca.pem");
  auto c = TlsContext::client(o);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().find("cannot load the CA file " + o.ca_file), std::string::npos) << c.error();
}

TEST_F(TlsTest, ContextsSayWhatTheyAre) {
  const auto server = server_context();
  const auto client = client_context();
  const auto insecure = client_context(false, false);
  ASSERT_TRUE(server && client && insecure);
  EXPECT_TRUE(server->is_server());
  EXPECT_FALSE(client->is_server());
  EXPECT_TRUE(client->verifies_peer());
  EXPECT_FALSE(insecure->verifies_peer());
  EXPECT_FALSE(server->verifies_peer()) << "servers do not ask for client certificates";
}

// --- Handshake, ALPN, data
// --------------------------------------------------------------------------

TEST_F(TlsTest, HandshakeAgreesOnH2AndCarriesPlaintextBothWays) {
  sessions(client_context(), "localhost", server_context());
  ASSERT_TRUE(client_ && server_);
  EXPECT_FALSE(client_->handshake_done());
  const HandshakeResult o = handshake(*client_, *server_);
  ASSERT_EQ(o.client, TlsStatus::kOk) << client_->error();
  ASSERT_EQ(o.server, TlsStatus::kOk) << server_->error();
  EXPECT_TRUE(client_->handshake_done());
  EXPECT_TRUE(server_->handshake_done());
  EXPECT_EQ(client_->alpn(), "h2");
  EXPECT_EQ(server_->alpn(), "h2");

  const std::string request = "a request, over ciphertext only";
  ASSERT_EQ(client_->write_plaintext(reinterpret_cast<const std::uint8_t*>(request.data()),
                                     request.size()),
            TlsStatus::kOk);
  ASSERT_GT(client_->output_size(), request.size()) << "records carry more than the plaintext";
  carry(*client_, *server_);
  EXPECT_EQ(read_all(*server_), request);

  const std::string answer(40'000, 'z');  // more than one 16 KiB record
  ASSERT_EQ(
      server_->write_plaintext(reinterpret_cast<const std::uint8_t*>(answer.data()), answer.size()),
      TlsStatus::kOk);
  carry(*server_, *client_);
  TlsStatus last = TlsStatus::kOk;
  EXPECT_EQ(read_all(*client_, &last), answer);
  EXPECT_EQ(last, TlsStatus::kWantInput) << "nothing more yet; the connection stays open";
}

TEST_F(TlsTest, AClientOfferingOnlyHttp1GetsHttp1) {
  sessions(client_context(true, true, false), "localhost", server_context());
  ASSERT_TRUE(client_ && server_);
  const HandshakeResult o = handshake(*client_, *server_);
  ASSERT_EQ(o.client, TlsStatus::kOk) << client_->error();
  EXPECT_EQ(client_->alpn(), "http/1.1");
  EXPECT_EQ(server_->alpn(), "http/1.1");
}

TEST_F(TlsTest, NoCommonProtocolMeansNoAlpnRatherThanAFailure) {
  // An h2-only server and an http/1.1-only client: the server does not acknowledge ALPN.
  sessions(client_context(true, true, false), "localhost", server_context("server", true, false));
  ASSERT_TRUE(client_ && server_);
  const HandshakeResult o = handshake(*client_, *server_);
  ASSERT_EQ(o.client, TlsStatus::kOk) << client_->error();
  ASSERT_EQ(o.server, TlsStatus::kOk) << server_->error();
  EXPECT_EQ(client_->alpn(), "");
  EXPECT_EQ(server_->alpn(), "");
}

TEST_F(TlsTest, CloseNotifyReadsAsClosed) {
  sessions(client_context(), "localhost", server_context());
  ASSERT_TRUE(client_ && server_);
  ASSERT_EQ(handshake(*client_, *server_).server, TlsStatus::kOk);
  read_all(*client_);  // the server's session tickets
  server_->shutdown();
  ASSERT_TRUE(carry(*server_, *client_)) << "close_notify is a record to send";
  TlsStatus last = TlsStatus::kOk;
  EXPECT_EQ(read_all(*client_, &last), "");
  EXPECT_EQ(last, TlsStatus::kClosed);
}

// --- Verification
// ---------------------------------------------------------------------------------

TEST_F(TlsTest, AnUnknownCaFailsVerificationOnTheClient) {
  sessions(client_context(false), "localhost", server_context());  // system trust store only
  ASSERT_TRUE(client_ && server_);
  const HandshakeResult o = handshake(*client_, *server_);
  EXPECT_EQ(o.client, TlsStatus::kFailed);
  EXPECT_NE(client_->error().find("certificate verification failed"), std::string::npos)
      << client_->error();
  EXPECT_NE(o.server, TlsStatus::kOk) << "the client's alert ends the server's handshake too";
  EXPECT_FALSE(server_->handshake_done());
}

TEST_F(TlsTest, ACertificateForAnotherNameFailsVerification) {
  sessions(client_context(), "localhost", server_context("wrong"));
  ASSERT_TRUE(client_ && server_);
  const HandshakeResult o = handshake(*client_, *server_);
  EXPECT_EQ(o.client, TlsStatus::kFailed);
  EXPECT_NE(client_->error().find("certificate verification failed"), std::string::npos)
      << client_->error();
}

TEST_F(TlsTest, AnIpLiteralIsCheckedAgainstTheCertificatesAddresses) {
  sessions(client_context(), "127.0.0.1", server_context());  // IP:127.0.0.1 in the SAN
  ASSERT_TRUE(client_ && server_);
  EXPECT_EQ(handshake(*client_, *server_).client, TlsStatus::kOk) << client_->error();

  sessions(client_context(), "127.0.0.1", server_context("wrong"));  // DNS:wrong.example only
  ASSERT_TRUE(client_ && server_);
  EXPECT_EQ(handshake(*client_, *server_).client, TlsStatus::kFailed);
  EXPECT_NE(client_->error().find("certificate verification failed"), std::string::npos)
      << client_->error();
}

TEST_F(TlsTest, InsecureModeAcceptsAnyCertificate) {
  sessions(client_context(false, false), "localhost", server_context("wrong"));
  ASSERT_TRUE(client_ && server_);
  const HandshakeResult o = handshake(*client_, *server_);
  EXPECT_EQ(o.client, TlsStatus::kOk) << client_->error();
  EXPECT_EQ(o.server, TlsStatus::kOk) << server_->error();
}

TEST(TlsLibraryTest, TheLibraryIsBoringSsl) {
  EXPECT_NE(tls_library_version().find("BoringSSL"), std::string_view::npos)
      << tls_library_version();
}

}  // namespace
}  // namespace fanout::transport
