// fanoutd's store tests (store_test.cc, store_keys_test.cc): a fixture with a fresh data
// directory per test, a store opened on it, subscriptions validated for it, and the database's
// bytes and SQL run on it from outside the store.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routing/catalogue.h"
#include "routing/subscription.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon {

// Each test gets a fresh directory from mkdtemp, removed at the end; the store's data directory
// is a not-yet-existing child of it.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "fanoutd_store_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    data_ = root_ / "data";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  std::unique_ptr<Store> open_store(const routing::EventCatalogue& catalogue) {
    auto store = Store::open(data_, catalogue);
    EXPECT_TRUE(store.has_value()) << (store ? std::string() : store.error());
    return store ? std::move(*store) : nullptr;
  }
  std::unique_ptr<Store> open_store() { return open_store(catalogue_); }

  // A validated subscription (http allowed), not stored yet.
  routing::Subscription sub(std::int64_t org_id, std::string_view type, std::string url,
                            std::vector<routing::Header> headers = {},
                            const routing::EventCatalogue* catalogue = nullptr) {
    routing::SubscriptionSpec spec{org_id, std::string(type), std::move(url), std::move(headers)};
    auto s = routing::validate(spec, catalogue != nullptr ? *catalogue : catalogue_,
                               {.allow_insecure_http = true});
    EXPECT_TRUE(s.has_value());
    return s ? std::move(*s) : routing::Subscription{};
  }

  // The database file and its WAL, concatenated (whatever SQLite has written so far).
  std::string db_bytes() const {
    std::string out;
    for (const char* name : {"fanoutd.db", "fanoutd.db-wal"}) {
      std::FILE* f = std::fopen((data_ / name).c_str(), "rb");
      if (f == nullptr) continue;  // no WAL file once the last connection closed
      char buf[4096];
      for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }

  // Runs fixed SQL on the database directly, outside the store.
  void raw_exec(const char* sql) const {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((data_ / "fanoutd.db").c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  std::filesystem::path root_;
  std::filesystem::path data_;
  routing::EventCatalogue catalogue_;
};

}  // namespace fanout::daemon
