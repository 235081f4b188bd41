// fanoutd apikey (create | list | revoke) and fanoutd keys public: straight on the store (safe
// beside a running daemon: WAL).
#include <uv.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <simdjson.h>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "fanout/version.h"
#include "routing/subscription.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/dir_lock.h"
#include "tools/fanoutd/limits.h"
#include "tools/fanoutd/log.h"
#include "tools/fanoutd/metrics.h"
#include "tools/fanoutd/redis.h"
#include "tools/fanoutd/store.h"
#include "tools/fanoutd/sync.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"
#include "transport/tls.h"

#include "tools/fanoutd/commands.h"

namespace fanout::daemon {
namespace {

tl::expected<std::vector<std::int64_t>, std::string> parse_org_list(std::string_view s,
                                                                    std::string_view flag) {
  std::vector<std::int64_t> out;
  while (true) {
    const std::size_t comma = s.find(',');
    const std::string_view part = s.substr(0, comma);
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || p != part.data() + part.size() || v <= 0) {
      return tl::unexpected(std::string(flag) + ": \"" + std::string(part) +
                            "\" is not a positive organisation id");
    }
    out.push_back(v);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

// A key's organisations for `apikey create` and `apikey list`: "all" for an unscoped INGEST key.
std::string join_orgs(const ApiKey& key) {
  if (key.role == Role::kIngest && key.orgs.empty()) return "all";
  const std::vector<std::int64_t>& orgs = key.orgs;
  std::string out;
  for (std::size_t i = 0; i < orgs.size(); ++i) {
    if (i != 0) out.push_back(',');
    out += std::to_string(orgs[i]);
  }
  return out.empty() ? "-" : out;
}

tl::expected<std::unique_ptr<Store>, std::string> open_store(const Flags& f,
                                                             const routing::EventCatalogue& cat) {
  const std::string* data = f.get("data");
  if (data == nullptr || data->empty())
    return tl::unexpected(std::string("--data DIR is required"));
  return Store::open(*data, cat);
}

// The organisations of the key `apikey create` makes, by role: into `orgs`; the exit status of
// a usage error otherwise.
std::optional<int> apikey_orgs(Role role, const Flags& flags, std::vector<std::int64_t>& orgs) {
  const std::string* org = flags.get("org");
  const std::string* org_list = flags.get("orgs");
  if (role == Role::kOrgAdmin) {
    if (org == nullptr || org_list != nullptr) {
      return usage_error("apikey create: an ORG_ADMIN key needs --org ID (one organisation)");
    }
    auto o = parse_org_list(*org, "--org");
    if (!o || o->size() != 1) return usage_error(o ? "--org takes one id" : o.error());
    orgs = *o;
  } else if (role == Role::kProvider) {
    if (org_list == nullptr || org != nullptr) {
      return usage_error("apikey create: a PROVIDER key needs --orgs ID,ID,...");
    }
    auto o = parse_org_list(*org_list, "--orgs");
    if (!o) return usage_error(o.error());
    orgs = *o;
  } else {
    // INGEST: scoped to organisations, or to every one only when asked for explicitly.
    const bool all = flags.get("all-orgs") != nullptr;
    if (org != nullptr || all == (org_list != nullptr)) {
      return usage_error(
          "apikey create: an INGEST key needs --orgs ID,ID,... (the organisations it may "
          "publish for) or --all-orgs (every organisation)");
    }
    if (org_list != nullptr) {
      auto o = parse_org_list(*org_list, "--orgs");
      if (!o) return usage_error(o.error());
      orgs = *o;
    }
  }
  if (role != Role::kIngest && flags.get("all-orgs") != nullptr) {
    return usage_error("apikey create: --all-orgs is for INGEST keys");
  }
  return std::nullopt;
}

int apikey_create(const Flags& flags, const routing::EventCatalogue& catalogue) {
  const std::string* role_text = flags.get("role");
  if (role_text == nullptr) return usage_error("apikey create: --role is required");
  const auto role = parse_role(*role_text);
  if (!role) {
    return usage_error("apikey create: --role must be ORG_ADMIN, PROVIDER or INGEST (got \"" +
                       *role_text + "\")");
  }
  std::vector<std::int64_t> orgs;
  if (const std::optional<int> rc = apikey_orgs(*role, flags, orgs)) return *rc;
  if (!flags.positional.empty()) return usage_error("apikey create: unexpected argument");
  auto store = open_store(flags, catalogue);
  if (!store) return usage_error(store.error());
  const std::string* name = flags.get("name");
  auto created =
      (*store)->create_api_key(*role, orgs, name != nullptr ? *name : std::string(), now_unix_us());
  if (!created) {
    std::fprintf(stderr, "fanoutd: apikey create: %s\n", created.error().c_str());
    return 1;
  }
  const ApiKey& k = created->first;
  std::printf("created API key id=%lld role=%s orgs=%s\n", static_cast<long long>(k.id),
              std::string(to_string(k.role)).c_str(), join_orgs(k).c_str());
  std::printf("store it now: it is shown only once\n%s\n", created->second.c_str());
  return 0;
}

int apikey_list(const Flags& flags, const routing::EventCatalogue& catalogue) {
  if (!flags.positional.empty()) return usage_error("apikey list: unexpected argument");
  auto store = open_store(flags, catalogue);
  if (!store) return usage_error(store.error());
  auto keys = (*store)->api_keys();
  if (!keys) {
    std::fprintf(stderr, "fanoutd: apikey list: %s\n", keys.error().c_str());
    return 1;
  }
  std::printf("id role orgs name created_at revoked_at\n");
  for (const ApiKey& k : *keys) {
    std::printf("%lld %s %s %s %s %s\n", static_cast<long long>(k.id),
                std::string(to_string(k.role)).c_str(), join_orgs(k).c_str(),
                k.name.empty() ? "-" : k.name.c_str(), format_timestamp(k.created_at_us).c_str(),
                k.revoked_at_us ? format_timestamp(*k.revoked_at_us).c_str() : "-");
  }
  return 0;
}

int apikey_revoke(const Flags& flags, const routing::EventCatalogue& catalogue) {
  if (flags.positional.size() != 1) return usage_error("apikey revoke: expected one key id");
  std::int64_t id = 0;
  const std::string& s = flags.positional[0];
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc() || p != s.data() + s.size() || id <= 0) {
    return usage_error("apikey revoke: \"" + s + "\" is not a key id");
  }
  auto store = open_store(flags, catalogue);
  if (!store) return usage_error(store.error());
  auto r = (*store)->revoke_api_key(id, now_unix_us());
  if (!r) {
    std::fprintf(stderr, "fanoutd: apikey revoke: %s\n",
                 r.error().kind == StoreError::Kind::kNotFound
                     ? ("no live key with id " + s).c_str()
                     : r.error().message.c_str());
    return 1;
  }
  std::printf("revoked API key id=%s\n", s.c_str());
  return 0;
}

}  // namespace

int cmd_apikey(std::span<char*> args) {
  if (args.empty()) return usage_error("apikey: expected create, list or revoke");
  const std::string_view sub = args[0];
  auto flags = parse_flags(args.subspan(1), {"data", "role", "org", "orgs", "name"}, {"all-orgs"});
  if (!flags) return usage_error("apikey " + std::string(sub) + ": " + flags.error());
  const routing::EventCatalogue catalogue;
  if (sub == "create") return apikey_create(*flags, catalogue);
  if (sub == "list") return apikey_list(*flags, catalogue);
  if (sub == "revoke") return apikey_revoke(*flags, catalogue);
  return usage_error("apikey: expected create, list or revoke (got \"" + std::string(sub) + "\")");
}

int cmd_keys(std::span<char*> args) {
  if (args.empty() || std::string_view(args[0]) != "public") {
    return usage_error("keys: expected \"public\"");
  }
  auto flags = parse_flags(args.subspan(1), {"data"});
  if (!flags) return usage_error("keys public: " + flags.error());
  const routing::EventCatalogue catalogue;
  auto store = open_store(*flags, catalogue);
  if (!store) return usage_error(store.error());
  auto pem = (*store)->signing_key_pem();
  if (!pem) {
    std::fprintf(stderr, "fanoutd: keys public: %s\n", pem.error().c_str());
    return 1;
  }
  auto signer = engine::Signer::from_pem(*pem);
  if (!signer) {
    std::fprintf(stderr, "fanoutd: keys public: stored key unreadable: %s\n",
                 signer.error().c_str());
    return 1;
  }
  std::fputs(signer->public_key_pem().c_str(), stdout);
  return 0;
}

}  // namespace fanout::daemon
