// A thin layer over SQLite's C API, shared by every store in fanout (the engine's journal and
// fanoutd's store): prepared statements and transactions that finalise and roll back on every
// path, errors as values (`tl::expected`, the message naming what was being done and SQLite's
// reason), numbered migrations, and opening a database file in WAL mode.
//
// Threading: a handle and its statements are used by one thread at a time (SQLite's default
// serialized mode makes concurrent use safe but slow; fanout never relies on it).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace fanout::sqlite {

inline tl::unexpected<std::string> db_error(sqlite3* db, std::string_view what) {
  std::string message(what);
  message += ": ";
  message += sqlite3_errmsg(db);
  return tl::unexpected(std::move(message));
}

// One prepared statement, finalized on destruction. Parameters are bound by 1-based index;
// text and blobs are bound without copying (SQLite's SQLITE_STATIC, i.e. a null destructor),
// so what they point to must outlive the step() calls.
class Statement {
 public:
  static tl::expected<Statement, std::string> prepare(sqlite3* db, std::string_view sql,
                                                      std::string what) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
        SQLITE_OK) {
      sqlite3_finalize(stmt);
      return db_error(db, what);
    }
    return Statement(db, stmt, std::move(what));
  }

  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        what_(std::move(other.what_)),
        bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }  // a no-op for nullptr

  void bind(int index, std::int64_t value) noexcept {
    note(sqlite3_bind_int64(stmt_, index, value));
  }
  void bind_null(int index) noexcept { note(sqlite3_bind_null(stmt_, index)); }
  void bind_text(int index, std::string_view value) noexcept {
    // A null pointer would bind SQL NULL; an empty view may have one.
    const char* data = value.data() != nullptr ? value.data() : "";
    note(sqlite3_bind_text64(stmt_, index, data, value.size(), nullptr, SQLITE_UTF8));
  }
  void bind_blob(int index, const void* data, std::size_t size) noexcept {
    static constexpr char kEmpty[1] = {0};
    note(sqlite3_bind_blob64(stmt_, index, data != nullptr ? data : kEmpty, size, nullptr));
  }

  // true: a row is ready; false: done.
  tl::expected<bool, std::string> step() {
    if (bind_rc_ != SQLITE_OK) {
      return tl::unexpected(what_ + ": binding a parameter: " + sqlite3_errstr(bind_rc_));
    }
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return db_error(db_, what_);
  }
  // Steps a statement that returns no row (or whose rows do not matter) to completion.
  tl::expected<void, std::string> run() {
    for (;;) {
      auto row = step();
      if (!row) return tl::unexpected(std::move(row.error()));
      if (!*row) return {};
    }
  }
  // Ready to bind and step again.
  void reset() noexcept {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bind_rc_ = SQLITE_OK;
  }

  std::int64_t int64(int column) const noexcept { return sqlite3_column_int64(stmt_, column); }
  bool is_null(int column) const noexcept {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  std::string text(int column) const {
    const unsigned char* data = sqlite3_column_text(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return {};
    return std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
  }
  std::string blob(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return {};
    return std::string(static_cast<const char*>(data), static_cast<std::size_t>(size));
  }
  const std::string& what() const noexcept { return what_; }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string what) noexcept
      : db_(db), stmt_(stmt), what_(std::move(what)) {}
  void note(int rc) noexcept {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string what_;
  int bind_rc_ = SQLITE_OK;
};

// A transaction rolled back on destruction unless committed.
class Transaction {
 public:
  enum class Mode : std::uint8_t { kRead, kWrite };

  // kWrite takes the write lock at once (BEGIN IMMEDIATE, waiting up to the busy timeout);
  // kRead starts a deferred transaction, a consistent snapshot once the first read ran.
  static tl::expected<Transaction, std::string> begin(sqlite3* db, Mode mode,
                                                      std::string_view what) {
    const char* sql = mode == Mode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN";
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return db_error(db, std::string(what) + ": starting a transaction");
    }
    return Transaction(db, what);
  }

  Transaction(Transaction&& other) noexcept
      : db_(std::exchange(other.db_, nullptr)), what_(std::move(other.what_)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  tl::expected<void, std::string> commit() {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return db_error(db_, what_ + ": committing");  // the destructor rolls back
    }
    db_ = nullptr;
    return {};
  }

 private:
  Transaction(sqlite3* db, std::string_view what) : db_(db), what_(what) {}
  sqlite3* db_;
  std::string what_;
};

// PRAGMA user_version, the schema version migrations keep.
[[nodiscard]] tl::expected<int, std::string> read_user_version(sqlite3* db);

// Applies `migrations[v]` for every v from the database's user_version up to the last, each in
// its own write transaction (user_version re-read under the lock: another process may have
// migrated meanwhile); each script must set user_version to v + 1. A database newer than
// `migrations` knows is refused, naming both versions and `program`.
[[nodiscard]] tl::expected<void, std::string> migrate(sqlite3* db,
                                                      std::span<const char* const> migrations,
                                                      std::string_view program);

// Runs a pragma (fixed text) and returns the first column of its first row, if any.
[[nodiscard]] tl::expected<std::string, std::string> pragma(sqlite3* db, std::string_view sql);

// The busy timeout every fanout connection sets (writers of other processes are waited for).
inline constexpr int kBusyTimeoutMs = 5000;

// Opens (creating it with mode 0600 if missing) the database at `file`, with extended result
// codes, the busy timeout and WAL mode, then applies `migrations`. `synchronous` is the
// PRAGMA synchronous level ("NORMAL" or "FULL"). `page_size` (bytes, a power of two from 512
// to 65536; 0: SQLite's default, 4096) applies to a database created here only: an existing
// one keeps its pages (in WAL mode not even VACUUM changes them). On error the handle is closed.
[[nodiscard]] tl::expected<sqlite3*, std::string> open_wal(const std::filesystem::path& file,
                                                           std::string_view synchronous,
                                                           std::span<const char* const> migrations,
                                                           std::string_view program,
                                                           int page_size = 0);

// Opens the existing database at `file` read-only, for one thread at a time (NOMUTEX), with
// extended result codes and the busy timeout (the journal's history and body readers). On error
// the handle is closed.
[[nodiscard]] tl::expected<sqlite3*, std::string> open_reader(const std::filesystem::path& file);

}  // namespace fanout::sqlite
