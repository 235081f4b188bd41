// Tests of tools/fanoutd/config.cc's `serve` command line (file then flags, whatever the order;
// --allow-subnet appending; --flag=value; missing values; unknown flags; the signing flags) and
// parse_listen(). TOML files are written into a mkdtemp directory removed at the end.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "tests/tools/fanoutd/config_support.h"
#include "tools/fanoutd/config.h"

namespace fanout::daemon {
namespace {

// --- The serve command line ---------------------------------------------------------------------

TEST(ServeArgs, EveryFlagInBothForms) {
  auto c =
      parse_args({"--listen", "127.0.0.2:81", "--data", "d1", "--insecure", "--allow-subnet",
                  "127.0.0.1/32", "--workers", "4", "--ca-file", "ca.pem", "--tls-cert", "c.pem",
                  "--tls-key", "k.pem", "--log-level", "error", "--drain-timeout-ms", "0"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->listen_host, "127.0.0.2");
  EXPECT_EQ(c->listen_port, 81);
  EXPECT_EQ(c->data_dir, std::filesystem::path("d1"));
  EXPECT_TRUE(c->engine.insecure);
  EXPECT_EQ(c->engine.allow_subnets, std::vector<std::string>{"127.0.0.1/32"});
  EXPECT_EQ(c->engine.workers, 4u);
  EXPECT_EQ(c->engine.ca_file, "ca.pem");
  EXPECT_EQ(c->tls_cert, "c.pem");
  EXPECT_EQ(c->tls_key, "k.pem");
  EXPECT_EQ(c->log_level, LogLevel::kError);
  EXPECT_EQ(c->drain_timeout_ms, 0u);

  auto e = parse_args({"--listen=[::1]:0", "--data=d2", "--allow-subnet=::1/128", "--workers=1024",
                       "--ca-file=x.pem", "--tls-cert=c2.pem", "--tls-key=k2.pem",
                       "--log-level=debug", "--drain-timeout-ms=3600000"});
  ASSERT_TRUE(e) << e.error();
  EXPECT_EQ(e->listen_host, "::1");
  EXPECT_EQ(e->listen_port, 0);
  EXPECT_EQ(e->data_dir, std::filesystem::path("d2"));
  EXPECT_FALSE(e->engine.insecure);
  EXPECT_EQ(e->engine.allow_subnets, std::vector<std::string>{"::1/128"});
  EXPECT_EQ(e->engine.workers, 1024u);
  EXPECT_EQ(e->engine.ca_file, "x.pem");
  EXPECT_EQ(e->tls_cert, "c2.pem");
  EXPECT_EQ(e->tls_key, "k2.pem");
  EXPECT_EQ(e->log_level, LogLevel::kDebug);
  EXPECT_EQ(e->drain_timeout_ms, 3'600'000u);
  // Only the first '=' splits: the value may hold more.
  EXPECT_EQ(parse_args({"--data=a=b"})->data_dir, std::filesystem::path("a=b"));
}

TEST(ServeArgs, FlagsOverrideTheFileWhereverConfigIs) {
  ConfigDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("fanoutd.toml",
                                     "workers = 3\nlog_level = \"warn\"\ndata = \"from-file\"\n"
                                     "listen = \"127.0.0.1:7000\"\nretry.max_retries = 2\n");
  for (auto c : {parse_args({"--workers", "5", "--listen=127.0.0.1:7001", "--config", file}),
                 parse_args({"--config", file, "--workers", "5", "--listen=127.0.0.1:7001"}),
                 parse_args({"--workers=5", "--config=" + file, "--listen", "127.0.0.1:7001"})}) {
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->engine.workers, 5u);                            // flag
    EXPECT_EQ(c->listen_port, 7001);                             // flag
    EXPECT_EQ(c->log_level, LogLevel::kWarn);                    // file
    EXPECT_EQ(c->data_dir, std::filesystem::path("from-file"));  // file
    EXPECT_EQ(c->engine.retry.max_retries, 2u);                  // file
    EXPECT_EQ(c->engine.max_event_bytes, 262'144u);              // default
  }
}

TEST(ServeArgs, LaterFlagsWin) {
  auto c = parse_args({"--workers", "1", "--workers", "2", "--log-level=warn", "--log-level=info"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.workers, 2u);
  EXPECT_EQ(c->log_level, LogLevel::kInfo);
}

TEST(ServeArgs, AllowSubnetAppendsToTheFilesList) {
  ConfigDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("f.toml", "allow_subnets = [\"10.0.0.0/8\"]\n");
  auto c =
      parse_args({"--allow-subnet", "127.0.0.1/32", "--config", file, "--allow-subnet=::1/128"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.allow_subnets,
            (std::vector<std::string>{"10.0.0.0/8", "127.0.0.1/32", "::1/128"}));
}

// Several instances share a data directory but each has its own journal ([durability] dir).
TEST(ServeArgs, JournalDirFromTheFileOrTheFlag) {
  EXPECT_EQ(Config{}.journal_dir, std::filesystem::path());  // empty: the data directory
  ConfigDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("j.toml", "[durability]\ndir = \"/var/lib/j-file\"\n");
  auto c = parse_args({"--config", file});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->journal_dir, std::filesystem::path("/var/lib/j-file"));
  c = parse_args({"--config", file, "--journal-dir", "j-flag"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->journal_dir, std::filesystem::path("j-flag"));
  c = parse_args({"--journal-dir=j2"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->journal_dir, std::filesystem::path("j2"));
  EXPECT_EQ(args_error({"--journal-dir="}), "--journal-dir: must be a non-empty string (got \"\")");
}

TEST(ServeArgs, TlsCertAndKeyGoTogether) {
  const std::string want = "tls_cert and tls_key (--tls-cert, --tls-key) must be given together";
  EXPECT_EQ(args_error({"--tls-cert", "c.pem"}), want);
  EXPECT_EQ(args_error({"--tls-key", "k.pem"}), want);
  EXPECT_EQ(args_error({"--tls-cert", "c.pem", "--tls-key", "k.pem"}), "");

  ConfigDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("tls.toml", "tls_cert = \"c.pem\"\n");
  EXPECT_EQ(args_error({"--config", file}), want);
  auto c = parse_args({"--config", file, "--tls-key", "k.pem"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->tls_cert, "c.pem");
  EXPECT_EQ(c->tls_key, "k.pem");
  // apply_toml alone does not check the pair: flags may complete it.
  Config half;
  EXPECT_TRUE(apply_toml(half, "tls_key = \"k.pem\"", "t.toml"));
}

TEST(ServeArgs, MissingValuesNameTheFlag) {
  EXPECT_EQ(args_error({"--workers"}), "--workers: missing value");
  EXPECT_EQ(args_error({"--config"}), "--config: missing value");
  EXPECT_EQ(args_error({"--data", "--insecure"}), "--data: missing value");
  EXPECT_EQ(args_error({"--insecure", "--listen"}), "--listen: missing value");
  // "-1" is a value (then out of range), not a flag.
  EXPECT_EQ(args_error({"--workers", "-1"}),
            "--workers: must be an integer in 0..1024 (got \"-1\")");
}

TEST(ServeArgs, UnknownFlagsAndArgumentsAreNamed) {
  EXPECT_EQ(args_error({"--colour", "red"}), "--colour: unknown flag");
  EXPECT_EQ(args_error({"--colour=red"}), "--colour: unknown flag");
  EXPECT_EQ(args_error({"--workers", "2", "--max-in-flight", "5"}),
            "--max-in-flight: unknown flag");
  EXPECT_EQ(args_error({"--help"}), "--help: unknown flag");
  EXPECT_EQ(args_error({"-w", "2"}), "unexpected argument \"-w\"");
  EXPECT_EQ(args_error({"serve"}), "unexpected argument \"serve\"");
  // The line is checked before the file is read.
  EXPECT_EQ(args_error({"--config", "/nonexistent/f.toml", "--bogus"}), "--bogus: unknown flag");
}

TEST(ServeArgs, ValuesAreCheckedLikeTheKeys) {
  EXPECT_EQ(args_error({"--workers", "2000"}),
            "--workers: must be an integer in 0..1024 (got \"2000\")");
  EXPECT_EQ(args_error({"--workers", "abc"}),
            "--workers: must be an integer in 0..1024 (got \"abc\")");
  EXPECT_EQ(args_error({"--workers", "4x"}),
            "--workers: must be an integer in 0..1024 (got \"4x\")");
  EXPECT_EQ(args_error({"--workers="}), "--workers: must be an integer in 0..1024 (got \"\")");
  EXPECT_EQ(args_error({"--workers", "99999999999999999999"}),
            "--workers: must be an integer in 0..1024 (got \"99999999999999999999\")");
  EXPECT_EQ(args_error({"--drain-timeout-ms", "3600001"}),
            "--drain-timeout-ms: must be an integer in 0..3600000 (got \"3600001\")");
  EXPECT_EQ(args_error({"--log-level", "loud"}),
            "--log-level: must be one of debug, info, warn, error (got \"loud\")");
  EXPECT_EQ(args_error({"--data="}), "--data: must be a non-empty string (got \"\")");
  EXPECT_EQ(args_error({"--insecure=true"}), "--insecure: takes no value");
  EXPECT_EQ(args_error({"--listen", "localhost"}),
            "--listen: expected HOST:PORT with a numeric IPv4 or [IPv6] address (got "
            "\"localhost\")");
  EXPECT_EQ(args_error({"--listen", "127.0.0.1:65536"}),
            "--listen: the port must be a decimal integer in 0..65535 (got \"127.0.0.1:65536\")");
}

TEST(ServeArgs, ConfigFileErrors) {
  ConfigDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string missing = (dir.path() / "none.toml").string();
  EXPECT_EQ(args_error({"--config", missing}), missing + ": No such file or directory");
  const std::string bad = dir.write("bad.toml", "workers = 5000\n");
  EXPECT_EQ(args_error({"--config", bad, "--workers", "1"}),
            bad + ": workers: must be an integer in 0..1024 (got 5000)");
  const std::string good = dir.write("good.toml", "workers = 5\n");
  EXPECT_EQ(args_error({"--config", good, "--config", good}), "--config: given more than once");
  EXPECT_EQ(args_error({"--config="}), "--config: must be a non-empty string (got \"\")");
}

// --- parse_listen -------------------------------------------------------------------------------

TEST(ParseListen, NumericAddresses) {
  using P = std::pair<std::string, std::uint16_t>;
  EXPECT_EQ(parse_listen("127.0.0.1:8080").value(), (P{"127.0.0.1", 8080}));
  EXPECT_EQ(parse_listen("0.0.0.0:0").value(), (P{"0.0.0.0", 0}));
  EXPECT_EQ(parse_listen("10.1.2.3:65535").value(), (P{"10.1.2.3", 65535}));
  EXPECT_EQ(parse_listen("[::1]:0").value(), (P{"::1", 0}));
  EXPECT_EQ(parse_listen("[::]:443").value(), (P{"::", 443}));
  EXPECT_EQ(parse_listen("[2001:db8::1]:8080").value(), (P{"2001:db8::1", 8080}));
  EXPECT_EQ(parse_listen("[::ffff:127.0.0.1]:1").value(), (P{"::ffff:127.0.0.1", 1}));
  EXPECT_EQ(parse_listen("127.0.0.1:00080").value(), (P{"127.0.0.1", 80}));
}

TEST(ConfigSigning, StandardWebhooksFromTheFileAndTheFlag) {
  auto t = from_toml("[signing]\nstandard_webhooks = \"both\"\n");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->engine.standard_webhooks, routing::WebhookSigning::kBoth);
  for (const auto& [text, mode] : {std::pair{"off", routing::WebhookSigning::kOff},
                                   {"v1a", routing::WebhookSigning::kV1a},
                                   {"v1", routing::WebhookSigning::kV1},
                                   {"both", routing::WebhookSigning::kBoth}}) {
    auto c = parse_args({"--standard-webhooks", text});
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->engine.standard_webhooks, mode) << text;
  }
  for (const std::string_view bad : {"default", "v2", "V1", ""}) {
    EXPECT_NE(args_error({"--standard-webhooks", bad}).find("--standard-webhooks"),
              std::string::npos)
        << bad;
  }
  const std::string e = args_error({"--standard-webhooks", "default"});
  EXPECT_NE(e.find(R"(must be "off", "v1a", "v1" or "both" (got "default"))"), std::string::npos)
      << e;
  EXPECT_NE(toml_error("[signing]\nstandard_webhooks = 1\n").find("signing.standard_webhooks"),
            std::string::npos);
  EXPECT_NE(toml_error("[signing]\nkey = \"x\"\n").find("unknown option"), std::string::npos);
}

TEST(ConfigSigning, SigningThreadsFromTheFileAndTheFlag) {
  auto t = from_toml("[signing]\nthreads = 2\n");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->engine.signing_threads, 2u);
  auto c = parse_args({"--signing-threads", "256"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.signing_threads, 256u);
  EXPECT_NE(args_error({"--signing-threads", "257"}).find("--signing-threads"), std::string::npos);
  EXPECT_NE(toml_error("[signing]\nthreads = -1\n").find("signing.threads"), std::string::npos);
}

TEST(ConfigSigning, NoPartooSignatureFromTheFileAndTheFlag) {
  auto t = from_toml("[signing]\nno_partoo_signature = true\n");
  ASSERT_TRUE(t) << t.error();
  EXPECT_FALSE(t->engine.partoo_signature);
  auto f = from_toml("[signing]\nno_partoo_signature = false\n");
  ASSERT_TRUE(f) << f.error();
  EXPECT_TRUE(f->engine.partoo_signature);
  auto c = parse_args({"--no-partoo-signature"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_FALSE(c->engine.partoo_signature);
  EXPECT_NE(toml_error("[signing]\nno_partoo_signature = 1\n").find("signing.no_partoo_signature"),
            std::string::npos);
}

TEST(ParseListen, ErrorsNameTheRule) {
  auto error = [](std::string_view s) {
    auto r = parse_listen(s);
    return r ? std::string("(accepted)") : r.error();
  };
  const std::string numeric = "expected HOST:PORT with a numeric IPv4 or [IPv6] address (got ";
  const std::string port = "the port must be a decimal integer in 0..65535 (got ";
  const std::string missing = "missing :PORT after the address (got ";
  const std::string brackets = "an IPv6 address must be in brackets, as in [::1]:8080 (got ";

  EXPECT_EQ(error("127.0.0.1"), missing + "\"127.0.0.1\")");
  EXPECT_EQ(error("[::1]"), missing + "\"[::1]\")");
  EXPECT_EQ(error("127.0.0.1:"), port + "\"127.0.0.1:\")");
  EXPECT_EQ(error("127.0.0.1:65536"), port + "\"127.0.0.1:65536\")");
  EXPECT_EQ(error("[::1]:65536"), port + "\"[::1]:65536\")");
  EXPECT_EQ(error("127.0.0.1:-1"), port + "\"127.0.0.1:-1\")");
  EXPECT_EQ(error("127.0.0.1:+80"), port + "\"127.0.0.1:+80\")");
  EXPECT_EQ(error("127.0.0.1: 80"), port + "\"127.0.0.1: 80\")");
  EXPECT_EQ(error("127.0.0.1:0x50"), port + "\"127.0.0.1:0x50\")");
  EXPECT_EQ(error("127.0.0.1:http"), port + "\"127.0.0.1:http\")");
  EXPECT_EQ(error("127.0.0.1:123456"), port + "\"127.0.0.1:123456\")");
  EXPECT_EQ(error("localhost:8080"), numeric + "\"localhost:8080\")");
  EXPECT_EQ(error("localhost"), numeric + "\"localhost\")");
  EXPECT_EQ(error("example.com:443"), numeric + "\"example.com:443\")");
  EXPECT_EQ(error("256.0.0.1:80"), numeric + "\"256.0.0.1:80\")");
  EXPECT_EQ(error("127.1:80"), numeric + "\"127.1:80\")");
  EXPECT_EQ(error(":8080"), numeric + "\":8080\")");
  EXPECT_EQ(error(""), numeric + "\"\")");
  EXPECT_EQ(error("[localhost]:80"), numeric + "\"[localhost]:80\")");
  EXPECT_EQ(error("[127.0.0.1]:80"), numeric + "\"[127.0.0.1]:80\")");
  EXPECT_EQ(error("[::1:8080"), numeric + "\"[::1:8080\")");
  EXPECT_EQ(error("[::1]8080"), numeric + "\"[::1]8080\")");
  EXPECT_EQ(error("[fe80::1%eth0]:80"), numeric + "\"[fe80::1%eth0]:80\")");
  EXPECT_EQ(error("::1:8080"), brackets + "\"::1:8080\")");
  EXPECT_EQ(error("::1"), brackets + "\"::1\")");
  EXPECT_EQ(error("2001:db8::1"), brackets + "\"2001:db8::1\")");
}

}  // namespace
}  // namespace fanout::daemon
