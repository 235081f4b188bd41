// API key lookups without a database read per request: the principal of a presented key (or the
// fact that it matched nothing) is kept for `ttl_ms` (1 s), so a revocation takes effect within
// that and a flood of requests with one key costs one SQLite read per second. Entries are keyed
// by the SHA-256 of the key (the cache never holds a key), at most `max_entries` of them (the
// whole cache is dropped when full: entries live one second anyway). Loop thread only.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "tools/fanoutd/store.h"

namespace fanout::daemon {

class KeyCache {
 public:
  KeyCache(std::uint64_t ttl_ms, std::size_t max_entries) noexcept
      : ttl_ms_(ttl_ms), max_entries_(max_entries) {}

  // The cached lookup of `key`: null when not cached (or expired); else the key's principal,
  // or nullopt for a key that matched nothing.
  [[nodiscard]] const std::optional<ApiKey>* find(std::string_view key, std::uint64_t now_ms) {
    const auto it = entries_.find(digest(key));
    if (it == entries_.end()) return nullptr;
    if (now_ms >= it->second.expires_ms) {
      entries_.erase(it);
      return nullptr;
    }
    return &it->second.value;
  }

  void put(std::string_view key, std::optional<ApiKey> value, std::uint64_t now_ms) {
    if (entries_.size() >= max_entries_) entries_.clear();
    entries_[digest(key)] = Entry{std::move(value), now_ms + ttl_ms_};
  }

  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::optional<ApiKey> value;
    std::uint64_t expires_ms;
  };
  static std::string digest(std::string_view key) {
    std::string out(crypto_hash_sha256_BYTES, '\0');
    crypto_hash_sha256(reinterpret_cast<unsigned char*>(out.data()),
                       reinterpret_cast<const unsigned char*>(key.data()), key.size());
    return out;
  }
  std::uint64_t ttl_ms_;
  std::size_t max_entries_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace fanout::daemon
