// journal_candidates, candidates (a) and (b): SQLite 3 in WAL mode, synchronous=FULL and NORMAL,
// through a pass-through VFS that counts syncs and bytes written (bench/store/journal_candidates.cc
// says what is measured).
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "bench/store/journal_candidates.h"

namespace fanout::bench::journal {

namespace {

// A pass-through VFS over the default one that counts xSync calls and xWrite bytes.
sqlite3_vfs* g_real_vfs = nullptr;
sqlite3_vfs g_counting_vfs;
constexpr const char* kCountingVfs = "fanout-counting";

enum class FileKind { kDb, kWal, kOther };

struct CountingFile {
  sqlite3_file base;
  sqlite3_file* real;  // the default VFS's file, in the same allocation, right after this
  FileKind kind;
};

sqlite3_file* real(sqlite3_file* f) {
  return reinterpret_cast<CountingFile*>(f)->real;
}

int x_close(sqlite3_file* f) {
  return real(f)->pMethods->xClose(real(f));
}
int x_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return real(f)->pMethods->xRead(real(f), buf, n, off);
}
int x_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  const auto bytes = static_cast<std::uint64_t>(n);
  switch (reinterpret_cast<CountingFile*>(f)->kind) {
    case FileKind::kDb:
      g_io.db_bytes += bytes;
      break;
    case FileKind::kWal:
      g_io.wal_bytes += bytes;
      g_io.wal_extent = std::max(g_io.wal_extent, static_cast<std::uint64_t>(off) + bytes);
      break;
    case FileKind::kOther:
      break;
  }
  return real(f)->pMethods->xWrite(real(f), buf, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real(f)->pMethods->xTruncate(real(f), size);
}
int x_sync(sqlite3_file* f, int flags) {
  ++g_io.syncs;
  return real(f)->pMethods->xSync(real(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real(f)->pMethods->xFileSize(real(f), size);
}
int x_lock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xLock(real(f), level);
}
int x_unlock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xUnlock(real(f), level);
}
int x_check_reserved_lock(sqlite3_file* f, int* out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return real(f)->pMethods->xFileControl(real(f), op, arg);
}
int x_sector_size(sqlite3_file* f) {
  return real(f)->pMethods->xSectorSize(real(f));
}
int x_device_characteristics(sqlite3_file* f) {
  return real(f)->pMethods->xDeviceCharacteristics(real(f));
}
int x_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return real(f)->pMethods->xShmMap(real(f), region, size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
  real(f)->pMethods->xShmBarrier(real(f));
}
int x_shm_unmap(sqlite3_file* f, int del) {
  return real(f)->pMethods->xShmUnmap(real(f), del);
}
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int amount, void** out) {
  return real(f)->pMethods->xFetch(real(f), off, amount, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return real(f)->pMethods->xUnfetch(real(f), off, p);
}

const sqlite3_io_methods kCountingMethods = {
    .iVersion = 3,
    .xClose = x_close,
    .xRead = x_read,
    .xWrite = x_write,
    .xTruncate = x_truncate,
    .xSync = x_sync,
    .xFileSize = x_file_size,
    .xLock = x_lock,
    .xUnlock = x_unlock,
    .xCheckReservedLock = x_check_reserved_lock,
    .xFileControl = x_file_control,
    .xSectorSize = x_sector_size,
    .xDeviceCharacteristics = x_device_characteristics,
    .xShmMap = x_shm_map,
    .xShmLock = x_shm_lock,
    .xShmBarrier = x_shm_barrier,
    .xShmUnmap = x_shm_unmap,
    .xFetch = x_fetch,
    .xUnfetch = x_unfetch,
};

int x_open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* file = reinterpret_cast<CountingFile*>(f);
  file->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(CountingFile));
  file->kind = (flags & SQLITE_OPEN_MAIN_DB) != 0 ? FileKind::kDb
               : (flags & SQLITE_OPEN_WAL) != 0   ? FileKind::kWal
                                                  : FileKind::kOther;
  const int rc = g_real_vfs->xOpen(g_real_vfs, name, file->real, flags, out_flags);
  file->base.pMethods = file->real->pMethods != nullptr ? &kCountingMethods : nullptr;
  return rc;
}

}  // namespace

void register_counting_vfs() {
  g_real_vfs = sqlite3_vfs_find(nullptr);
  if (g_real_vfs == nullptr) fail("SQLite has no default VFS");
  if (g_real_vfs->iVersion < 1) fail("unexpected default VFS version");
  g_counting_vfs = *g_real_vfs;  // the unix VFS's other methods ignore the VFS pointer
  g_counting_vfs.szOsFile = static_cast<int>(sizeof(CountingFile)) + g_real_vfs->szOsFile;
  g_counting_vfs.zName = kCountingVfs;
  g_counting_vfs.pNext = nullptr;
  g_counting_vfs.xOpen = x_open;
  if (sqlite3_vfs_register(&g_counting_vfs, 0) != SQLITE_OK) fail("registering the VFS");
}

namespace {

class Db {
 public:
  explicit Db(const std::string& path) {
    const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   kCountingVfs);
    if (rc != SQLITE_OK) {
      const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      fail("opening " + path + ": " + why);
    }
    sqlite3_extended_result_codes(db_, 1);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() { sqlite3_close_v2(db_); }

  sqlite3* get() const { return db_; }
  void check(int rc, const char* what) const {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
      fail(std::string(what) + ": " + sqlite3_errmsg(db_));
    }
  }
  void exec(const char* sql) const {
    check(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), sql);
  }
  std::string text(const char* sql) const {
    sqlite3_stmt* s = nullptr;
    check(sqlite3_prepare_v2(db_, sql, -1, &s, nullptr), sql);
    const int rc = sqlite3_step(s);
    std::string out;
    if (rc == SQLITE_ROW && sqlite3_column_text(s, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    check(rc, sql);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt(const Db& db, const char* sql) : db_(db), sql_(sql) {
    db.check(sqlite3_prepare_v2(db.get(), sql, -1, &s_, nullptr), sql);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }

  void bind(int i, std::int64_t v) { db_.check(sqlite3_bind_int64(s_, i, v), sql_); }
  void bind_text(int i, const char* p, std::size_t n) {
    db_.check(sqlite3_bind_text64(s_, i, p, n, nullptr, SQLITE_UTF8), sql_);  // static
  }
  void bind_blob(int i, const void* p, std::size_t n) {
    db_.check(sqlite3_bind_blob64(s_, i, p, n, nullptr), sql_);  // static
  }
  void run() {
    const int rc = sqlite3_step(s_);
    if (rc != SQLITE_DONE) db_.check(rc == SQLITE_ROW ? SQLITE_ERROR : rc, sql_);
    sqlite3_reset(s_);
  }

 private:
  const Db& db_;
  const char* sql_;
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace

Run run_sqlite(const Options& o, const std::string& dir, bool full, std::size_t batch) {
  const std::string path = dir + "/deliveries.db";
  const std::string wal = path + "-wal";
  Run run;
  run.candidate = full ? "SQLite WAL, synchronous=FULL" : "SQLite WAL, synchronous=NORMAL";
  run.batch = batch;
  {
    Db db(path);
    if (db.text("PRAGMA journal_mode=WAL") != "wal") fail("could not switch to WAL");
    db.exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    db.exec(
        "CREATE TABLE deliveries(did INTEGER PRIMARY KEY, event_id TEXT, org_id INTEGER, "
        "type TEXT, sub_id INTEGER, body BLOB, attempts INTEGER, next_ms INTEGER, "
        "outcome INTEGER)");
    Stmt begin(db, "BEGIN IMMEDIATE");
    Stmt commit(db, "COMMIT");
    Stmt insert(db,
                "INSERT INTO deliveries(did, event_id, org_id, type, sub_id, body, attempts, "
                "next_ms, outcome) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 0)");
    Stmt update(db,
                "UPDATE deliveries SET outcome = ?2, attempts = attempts + 1, next_ms = 0 "
                "WHERE did = ?1");
    Stmt remove(db, "DELETE FROM deliveries WHERE did = ?1");
    std::string body = make_body(o.bytes);
    g_io.wal_extent = 0;

    run.phases.push_back(
        run_phase("insert", o.events, batch, o, [&](std::uint64_t first, std::uint64_t k) {
          begin.run();
          for (std::uint64_t i = first; i < first + k; ++i) {
            const Event e = make_event(i, body);
            insert.bind(1, e.did);
            insert.bind_text(2, e.event_id.data(), e.event_id.size());
            insert.bind(3, e.org_id);
            insert.bind_text(4, kType.data(), kType.size());
            insert.bind(5, e.sub_id);
            insert.bind_blob(6, body.data(), body.size());
            insert.bind(7, e.next_ms);
            insert.run();
          }
          commit.run();
        }));
    const std::uint64_t n = run.phases[0].events;
    if (db.text("SELECT count(*) FROM deliveries") != std::to_string(n)) fail("rows missing");
    run.phases.push_back(
        run_phase("update", n, batch, o, [&](std::uint64_t first, std::uint64_t k) {
          begin.run();
          for (std::uint64_t i = first; i < first + k; ++i) {
            update.bind(1, static_cast<std::int64_t>(i + 1));
            update.bind(2, 1);
            update.run();
          }
          commit.run();
        }));
    run.phases.push_back(
        run_phase("delete", n, batch, o, [&](std::uint64_t first, std::uint64_t k) {
          begin.run();
          for (std::uint64_t i = first; i < first + k; ++i) {
            remove.bind(1, static_cast<std::int64_t>(i + 1));
            remove.run();
          }
          commit.run();
        }));
    const std::uint64_t left = n - run.phases[2].events;
    if (db.text("SELECT count(*) FROM deliveries") != std::to_string(left)) fail("rows left");
    run.files = "db " + fixed(static_cast<double>(file_size(path)) / 1048576.0, 1) + " MiB, WAL " +
                fixed(static_cast<double>(file_size(wal)) / 1048576.0, 1) +
                " MiB (furthest write " +
                fixed(static_cast<double>(g_io.wal_extent) / 1048576.0, 1) + " MiB)";
  }
  remove_files({path, wal, path + "-shm", path + "-journal"});
  return run;
}

}  // namespace fanout::bench::journal
