#include "engine/sqlite.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace fanout::sqlite {

tl::expected<int, std::string> read_user_version(sqlite3* db) {
  auto stmt = Statement::prepare(db, "PRAGMA user_version", "reading the schema version");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  auto row = stmt->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row) return tl::unexpected(stmt->what() + ": no answer");
  return static_cast<int>(stmt->int64(0));
}

namespace {

std::string newer_version_error(int version, std::size_t latest, std::string_view program) {
  return "schema version " + std::to_string(version) + " is newer than this " +
         std::string(program) + " knows (latest " + std::to_string(latest) + "); use a newer " +
         std::string(program);
}

}  // namespace

tl::expected<void, std::string> migrate(sqlite3* db, std::span<const char* const> migrations,
                                        std::string_view program) {
  const int kLatestVersion = static_cast<int>(migrations.size());
  auto version = read_user_version(db);
  if (!version) return tl::unexpected(std::move(version.error()));
  if (*version > kLatestVersion)
    return tl::unexpected(newer_version_error(*version, migrations.size(), program));
  while (*version < kLatestVersion) {
    auto tx = Transaction::begin(db, Transaction::Mode::kWrite, "migrating the schema");
    if (!tx) return tl::unexpected(std::move(tx.error()));
    version = read_user_version(db);  // under the write lock: another process may have run it
    if (!version) return tl::unexpected(std::move(version.error()));
    if (*version > kLatestVersion)
      return tl::unexpected(newer_version_error(*version, migrations.size(), program));
    if (*version < kLatestVersion) {
      const int target = *version + 1;
      const std::string what =
          "applying migration " + std::to_string(*version) + " -> " + std::to_string(target);
      if (sqlite3_exec(db, migrations[static_cast<std::size_t>(*version)], nullptr, nullptr,
                       nullptr) != SQLITE_OK) {
        return db_error(db, what);
      }
      version = read_user_version(db);
      if (!version) return tl::unexpected(std::move(version.error()));
      if (*version != target) {
        return tl::unexpected(what + ": the script left user_version at " +
                              std::to_string(*version));
      }
    }
    if (auto committed = tx->commit(); !committed) return committed;
  }
  return {};
}

tl::expected<std::string, std::string> pragma(sqlite3* db, std::string_view sql) {
  auto stmt = Statement::prepare(db, sql, std::string(sql));
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  auto row = stmt->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  std::string value = *row ? stmt->text(0) : std::string();
  if (auto rest = stmt->run(); !rest) return tl::unexpected(std::move(rest.error()));
  return value;
}

namespace {

// Switching to WAL takes the exclusive lock while holding a shared one; when connections open a
// new database at once, SQLite answers SQLITE_BUSY at once instead of calling the busy handler
// (waiting could deadlock). So the switch is retried, 10 ms apart, for as long as the busy
// timeout. Once the file is in WAL mode (persistent) the pragma takes no lock to change.
tl::expected<std::string, std::string> switch_to_wal(sqlite3* db) {
  constexpr int kRetryMs = 10;
  for (int waited_ms = 0;; waited_ms += kRetryMs) {
    auto mode = pragma(db, "PRAGMA journal_mode=WAL");
    if (mode || waited_ms >= kBusyTimeoutMs || (sqlite3_errcode(db) & 0xff) != SQLITE_BUSY) {
      return mode;
    }
    sqlite3_sleep(kRetryMs);
  }
}

}  // namespace

tl::expected<sqlite3*, std::string> open_reader(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "opening a reader of " + file.string() + ": " + sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return tl::unexpected(std::move(message));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  return db;
}

tl::expected<sqlite3*, std::string> open_wal(const std::filesystem::path& file,
                                             std::string_view synchronous,
                                             std::span<const char* const> migrations,
                                             std::string_view program, int page_size) {
  // Created readable by its owner only (SQLite gives the -wal and -shm files the database's
  // permissions). An existing file keeps its mode.
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return tl::unexpected("opening " + file.string() + ": " +
                          std::error_code(errno, std::generic_category()).message());
  }
  ::close(fd);
  sqlite3* db = nullptr;
  const int rc =
      // NOMUTEX: a connection is used by one thread at a time (sqlite.h), so SQLite's own
      // per-call locking is skipped.
      sqlite3_open_v2(file.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "opening " + file.string() + ": " +
                          (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return tl::unexpected(std::move(message));
  }
  auto fail = [&](std::string message) {
    sqlite3_close_v2(db);
    return tl::unexpected(file.string() + ": " + std::move(message));
  };
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  // Before the switch to WAL, which writes the file's first page: the size is fixed then.
  if (page_size != 0) {
    if (auto r = pragma(db, "PRAGMA page_size=" + std::to_string(page_size)); !r) {
      return fail(std::move(r.error()));
    }
  }
  auto mode = switch_to_wal(db);
  if (!mode) return fail(std::move(mode.error()));
  if (*mode != "wal") return fail("could not switch to WAL mode (journal_mode is " + *mode + ")");
  const std::string sync = "PRAGMA synchronous=" + std::string(synchronous);
  if (auto r = pragma(db, sync); !r) return fail(std::move(r.error()));
  if (auto r = pragma(db, "PRAGMA foreign_keys=ON"); !r) return fail(std::move(r.error()));
  auto fk = pragma(db, "PRAGMA foreign_keys");
  if (!fk) return fail(std::move(fk.error()));
  if (*fk != "1") return fail("foreign keys are not supported by this SQLite build");
  if (auto migrated = migrate(db, migrations, program); !migrated) {
    return fail(std::move(migrated.error()));
  }
  return db;
}

}  // namespace fanout::sqlite
