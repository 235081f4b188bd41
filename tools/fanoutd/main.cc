// fanoutd: the daemon's command line (tools/fanoutd/README.md, "Command line").
//
//   serve    store → engine (routing table loaded, pending deliveries resumed) → HTTP server on
//            the main loop; SIGTERM/SIGINT drains the server, stops the engine and saves every
//            delivery without a final outcome, then exits 0.
//   apikey   create | list | revoke, straight on the store (safe beside a running daemon: WAL).
//   keys     public: the signing public key as PEM.
//   publish  NDJSON from a file or stdin to a running daemon's POST /v2/events.
//
// Files: commands.h (the commands and their flag parsing), cmd_serve.cc, cmd_apikey.cc
// (apikey, keys), cmd_publish.cc.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "fanout/version.h"
#include "tools/fanoutd/commands.h"
#include "tools/fanoutd/hugepages.h"

namespace fanout::daemon {

const char* const kUsage =
    "usage:\n"
    "  fanoutd serve --listen 127.0.0.1:PORT --data DIR [--config FILE] [--insecure]\n"
    "                [--allow-subnet CIDR]... [--workers N] [--ca-file FILE]\n"
    "                [--tls-cert FILE --tls-key FILE] [--log-level debug|info|warn|error]\n"
    "                [--drain-timeout-ms N] [--no-durable] [--journal-dir DIR]\n"
    "                [--standard-webhooks off|v1a|v1|both] [--signing-threads N]\n"
    "                [--no-partoo-signature]\n"
    "                [--redis-url redis://HOST:PORT[/DB] [--redis-stream NAME]\n"
    "                 [--redis-group NAME] [--redis-consumer NAME]]\n"
    "  fanoutd apikey create --data DIR --role ORG_ADMIN --org ID [--name TEXT]\n"
    "  fanoutd apikey create --data DIR --role PROVIDER --orgs ID,ID,... [--name TEXT]\n"
    "  fanoutd apikey create --data DIR --role INGEST --orgs ID,ID,...|--all-orgs [--name TEXT]\n"
    "  fanoutd apikey list --data DIR\n"
    "  fanoutd apikey revoke --data DIR ID\n"
    "  fanoutd keys public --data DIR\n"
    "  fanoutd publish --url http://HOST:PORT --key INGEST_KEY [FILE]   (NDJSON; stdin without "
    "FILE)\n"
    "  fanoutd --version | --help\n"
    "Every option and the configuration file: tools/fanoutd/README.md\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "fanoutd: %s\n%s", message.c_str(), kUsage);
  return 2;
}

tl::expected<Flags, std::string> parse_flags(std::span<char*> args,
                                             std::initializer_list<std::string_view> known,
                                             std::initializer_list<std::string_view> switches) {
  Flags f;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a.substr(0, 2) != "--") {
      f.positional.emplace_back(a);
      continue;
    }
    std::string name(a.substr(2));
    std::optional<std::string> value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (std::find(switches.begin(), switches.end(), name) != switches.end()) {
      if (value) return tl::unexpected("--" + name + " takes no value");
      f.named.emplace_back(std::move(name), "true");
      continue;
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return tl::unexpected("unknown option --" + name);
    }
    if (!value) {
      if (i + 1 >= args.size()) return tl::unexpected("--" + name + " needs a value");
      value = args[++i];
    }
    f.named.emplace_back(std::move(name), std::move(*value));
  }
  return f;
}

}  // namespace fanout::daemon

int main(int argc, char** argv) {
  using namespace fanout::daemon;
  std::span<char*> args(argv, static_cast<std::size_t>(argc));
  if (args.size() < 2) return usage_error("expected a command");
  const std::string_view cmd = args[1];
  auto rest = args.subspan(2);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("fanoutd %s\n", std::string(fanout::version()).c_str());
    return 0;
  }
  if (cmd == "serve") {
    reexec_with_huge_pages(argv);
    return cmd_serve(rest);
  }
  if (cmd == "apikey") return cmd_apikey(rest);
  if (cmd == "keys") return cmd_keys(rest);
  if (cmd == "publish") return cmd_publish(rest);
  return usage_error("unknown command \"" + std::string(cmd) + "\"");
}
