// Storage candidates for durable acceptance with group commit: what it costs, on this machine, to
// make N accepted events of B bytes durable, one sync per batch. Not a Google Benchmark: one
// program, plain flags, a markdown table on stdout.
//
//   (a) SQLite 3, WAL, synchronous=FULL: one transaction per batch of INSERTs into
//       deliveries(...) with a prepared statement, then (same database) one UPDATE per event
//       marking it final and one DELETE per event, each batched the same way: a delivery's life.
//   (b) the same with synchronous=NORMAL: in WAL mode a commit is not synced (durable against a
//       crash of the process, not against power loss), so it is only the no-sync ceiling.
//   (c) an append-only file: each batch is one write() of length-prefixed, CRC32C-checksummed
//       records, then one fdatasync(); the life adds one small "final" record per event.
//   (d) fdatasync() alone after a 4 KiB append, and after a 4 KiB overwrite of blocks already
//       written and synced (a preallocated log): syncs per second.
//
// Syncs and bytes for SQLite are counted by a pass-through VFS over the default one (every xSync
// and every xWrite to the database and its WAL, checkpoints included); for the log they are the
// program's own calls. Each phase stops after --phase-seconds (marked "capped": fewer events, the
// rates are per event done). Files live in a fresh mkdtemp directory under --dir (default /tmp,
// or the build directory when /tmp is tmpfs, where fdatasync costs nothing) and are removed.
//
// Run:
//   build/jbench/bench/journal_candidates [--events 200000] [--bytes 700]
//       [--batches 1,50,500,5000] [--phase-seconds 10] [--sync-count 2000] [--dir DIR]
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#ifndef FANOUT_JOURNAL_FALLBACK_DIR
#define FANOUT_JOURNAL_FALLBACK_DIR "."
#endif

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what);
}
[[noreturn]] void fail_errno(const std::string& what) {
  fail(what + ": " + std::error_code(errno, std::generic_category()).message());
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli, reflected 0x82F63B78), table-driven, eight bytes per step.
// ---------------------------------------------------------------------------------------------
using CrcTables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t i = 0; i < 256; ++i) {
    for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
  }
  return t;
}

constexpr CrcTables kCrc = make_crc_tables();

std::uint32_t crc32c(const unsigned char* p, std::size_t n) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);  // little-endian (x86_64)
    w ^= crc;
    crc = kCrc[7][w & 0xFF] ^ kCrc[6][(w >> 8) & 0xFF] ^ kCrc[5][(w >> 16) & 0xFF] ^
          kCrc[4][(w >> 24) & 0xFF] ^ kCrc[3][(w >> 32) & 0xFF] ^ kCrc[2][(w >> 40) & 0xFF] ^
          kCrc[1][(w >> 48) & 0xFF] ^ kCrc[0][w >> 56];
  }
  for (; n > 0; ++p, --n)
    crc = kCrc[0][(crc ^ static_cast<std::uint32_t>(*p)) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

void check_crc32c() {
  static constexpr std::string_view kCheck = "123456789";  // the standard check value
  std::array<unsigned char, 9> bytes{};
  std::memcpy(bytes.data(), kCheck.data(), bytes.size());
  if (crc32c(bytes.data(), bytes.size()) != 0xE3069283u) fail("CRC32C self-check failed");
}

// ---------------------------------------------------------------------------------------------
// I/O counters: the SQLite VFS below and the log code add to them.
// ---------------------------------------------------------------------------------------------
struct IoCounters {
  std::uint64_t syncs = 0;
  std::uint64_t wal_bytes = 0;   // written to the -wal file
  std::uint64_t db_bytes = 0;    // written to the database file (checkpoints)
  std::uint64_t log_bytes = 0;   // written to the append log
  std::uint64_t wal_extent = 0;  // the furthest byte written in the -wal file
};
IoCounters g_io;

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

// ---------------------------------------------------------------------------------------------
// Options, events, formatting.
// ---------------------------------------------------------------------------------------------
struct Options {
  std::uint64_t events = 200000;
  std::size_t bytes = 700;
  std::vector<std::size_t> batches = {1, 50, 500, 5000};
  double phase_seconds = 10.0;
  std::uint64_t sync_count = 2000;
  std::string dir;  // empty: /tmp, or the build directory if /tmp is tmpfs
};

template <class T>
bool parse_number(std::string_view text, T& out) {
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && p == end;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: journal_candidates [--events N] [--bytes B] [--batches 1,50,500,5000]\n"
               "                          [--phase-seconds S] [--sync-count K] [--dir DIR]\n");
  std::exit(code);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(0);
    if (i + 1 >= argc) usage(2);
    const std::string_view value = argv[++i];
    bool ok = true;
    if (arg == "--events") {
      ok = parse_number(value, o.events) && o.events > 0 && o.events <= 100'000'000;
    } else if (arg == "--bytes") {
      ok = parse_number(value, o.bytes) && o.bytes <= (1u << 20);
    } else if (arg == "--phase-seconds") {
      ok = parse_number(value, o.phase_seconds) && o.phase_seconds > 0 && o.phase_seconds <= 3600;
    } else if (arg == "--sync-count") {
      ok = parse_number(value, o.sync_count) && o.sync_count > 0 && o.sync_count <= 1'000'000;
    } else if (arg == "--dir") {
      o.dir = std::string(value);
    } else if (arg == "--batches") {
      o.batches.clear();
      std::string_view rest = value;
      while (ok && !rest.empty()) {
        const auto comma = rest.find(',');
        std::size_t b = 0;
        ok = parse_number(rest.substr(0, comma), b) && b > 0 && b <= 1'000'000;
        o.batches.push_back(b);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
      ok = ok && !o.batches.empty();
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad option: %s %s\n", argv[i - 1], argv[i]);
      usage(2);
    }
  }
  return o;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void put_hex(char* out, std::uint64_t value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i, value >>= 4) out[i] = kHex[value & 0xF];
}

constexpr std::string_view kType = "business_updated";
constexpr std::size_t kIdSize = 32;  // "evt_" and 28 hex digits

// One delivery's fields; the body is shared, its first 16 bytes replaced by the event number.
struct Event {
  std::int64_t did;
  std::int64_t org_id;
  std::int64_t sub_id;
  std::int64_t next_ms;
  std::array<char, kIdSize> event_id;
};

Event make_event(std::uint64_t i, std::string& body) {
  Event e{};
  const std::uint64_t h = splitmix64(i);
  e.did = static_cast<std::int64_t>(i + 1);
  e.org_id = static_cast<std::int64_t>(h % 10000 + 1);
  e.sub_id = e.org_id * 10 + static_cast<std::int64_t>(i % 3);
  e.next_ms = 1'790'000'000'000 + static_cast<std::int64_t>(i);
  std::memcpy(e.event_id.data(), "evt_", 4);
  put_hex(e.event_id.data() + 4, h, 16);
  put_hex(e.event_id.data() + 20, splitmix64(h), 12);
  if (body.size() >= 16) put_hex(body.data(), i, 16);
  return e;
}

std::string make_body(std::size_t bytes) {
  static constexpr std::string_view kText =
      R"({"type":"business_updated","payload":{"business_id":"biz_8c1f2a","name":"Corner )"
      R"(Bakery","address":{"street":"12 Rue des Lilas","city":"Lyon","zip":"69003"},"tags":)"
      R"(["bakery","coffee"],"open":true,"rating":4.7}} )";
  std::string body;
  body.reserve(bytes);
  while (body.size() < bytes) body.append(kText.substr(0, bytes - body.size()));
  return body;
}

std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v);
  for (std::size_t i = s.size(); i > 3; i -= 3) s.insert(i - 3, ",");
  return s;
}

std::string fixed(double v, int decimals) {
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
  return buf.data();
}

// Three significant digits at most, no thousands separator below 1,000.
std::string sig3(double v) {
  if (v == 0) return "0";
  if (v >= 999.5) return with_commas(static_cast<std::uint64_t>(v + 0.5));
  if (v >= 99.95) return fixed(v, 0);
  if (v >= 9.995) return fixed(v, 1);
  return fixed(v, 2);
}

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

std::string fs_name(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return "unknown";
  switch (st.f_type) {
    case 0xEF53:
      return "ext4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x01021994:
      return "tmpfs";
    case 0x858458F6:
      return "ramfs";
    case 0x794C7630:
      return "overlayfs";
    default: {
      std::array<char, 32> buf{};
      std::snprintf(buf.data(), buf.size(), "0x%lx", static_cast<unsigned long>(st.f_type));
      return buf.data();
    }
  }
}

bool in_memory_fs(const std::string& path) {
  const std::string fs = fs_name(path);
  return fs == "tmpfs" || fs == "ramfs";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "?" : one;
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) fail_errno("opening " + path);
  if (::fsync(fd) != 0) fail_errno("fsync " + path);
  ::close(fd);
}

// A fresh directory, removed with everything in it when the run ends (or fails).
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& base) {
    std::string pattern = base + "/fanout-journal-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) fail_errno("mkdtemp in " + base);
    path = buf.data();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

void remove_files(std::initializer_list<std::string> files) {
  for (const auto& f : files) ::unlink(f.c_str());
}

// ---------------------------------------------------------------------------------------------
// Phases: a batch at a time until the events are done or the phase's time is up.
// ---------------------------------------------------------------------------------------------
struct Phase {
  std::string name;
  std::uint64_t events = 0;
  std::uint64_t commits = 0;
  std::uint64_t syncs = 0;
  std::uint64_t bytes = 0;  // written (WAL + database, or log)
  double seconds = 0;
  bool capped = false;
};

template <class CommitBatch>
Phase run_phase(std::string name, std::uint64_t n, std::size_t batch, const Options& o,
                CommitBatch&& commit_batch) {
  Phase p;
  p.name = std::move(name);
  const IoCounters before = g_io;
  const auto t0 = Clock::now();
  std::uint64_t done = 0;
  while (done < n && g_stop == 0) {
    const std::uint64_t k = std::min<std::uint64_t>(batch, n - done);
    commit_batch(done, k);
    done += k;
    ++p.commits;
    if (done < n && seconds_since(t0) > o.phase_seconds) {
      p.capped = true;
      break;
    }
  }
  p.seconds = seconds_since(t0);
  p.events = done;
  p.syncs = g_io.syncs - before.syncs;
  p.bytes = (g_io.wal_bytes - before.wal_bytes) + (g_io.db_bytes - before.db_bytes) +
            (g_io.log_bytes - before.log_bytes);
  return p;
}

struct Run {
  std::string candidate;
  std::size_t batch = 0;
  std::vector<Phase> phases;  // the first is acceptance
  std::string files;          // sizes observed
};

// ---------------------------------------------------------------------------------------------
// (a), (b) SQLite.
// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// (c) The append log.
// ---------------------------------------------------------------------------------------------
// A record: u32 payload length, u32 CRC32C of the payload, the payload. Payloads:
//   accept: u8 1, did, org_id, sub_id, next_ms (i64 each), u16 id length, u16 type length,
//           event id, type, body
//   final:  u8 2, did (i64), u8 outcome
constexpr std::uint8_t kAccept = 1;
constexpr std::uint8_t kFinal = 2;
constexpr std::size_t kHeader = 8;

class Buffer {
 public:
  void clear() { bytes_.clear(); }
  std::size_t size() const { return bytes_.size(); }
  const unsigned char* data() const { return bytes_.data(); }
  void reserve(std::size_t n) { bytes_.reserve(n); }

  template <class T>
  void put(T v) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + sizeof v);
    std::memcpy(bytes_.data() + at, &v, sizeof v);
  }
  void put(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::size_t begin_record() {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + kHeader);
    return at;
  }
  void end_record(std::size_t at) {
    const std::size_t n = bytes_.size() - at - kHeader;
    const auto length = static_cast<std::uint32_t>(n);
    const std::uint32_t crc = crc32c(bytes_.data() + at + kHeader, n);
    std::memcpy(bytes_.data() + at, &length, 4);
    std::memcpy(bytes_.data() + at + 4, &crc, 4);
  }

 private:
  std::vector<unsigned char> bytes_;
};

void write_all(int fd, const unsigned char* p, std::size_t n, const std::string& what) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail_errno("write " + what);
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void datasync(int fd, const std::string& what) {
  if (::fdatasync(fd) != 0) fail_errno("fdatasync " + what);
  ++g_io.syncs;
}

// Reads the log back: every record's CRC, and the counts of each kind.
void verify_log(const std::string& path, std::uint64_t accepts, std::uint64_t finals) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> all((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  std::uint64_t seen[3] = {0, 0, 0};
  std::size_t at = 0;
  while (at + kHeader <= all.size()) {
    std::uint32_t length = 0;
    std::uint32_t crc = 0;
    std::memcpy(&length, all.data() + at, 4);
    std::memcpy(&crc, all.data() + at + 4, 4);
    if (length == 0 || at + kHeader + length > all.size()) fail("log: torn record");
    const auto* payload = reinterpret_cast<const unsigned char*>(all.data() + at + kHeader);
    if (crc32c(payload, length) != crc) fail("log: bad CRC");
    if (payload[0] != kAccept && payload[0] != kFinal) fail("log: bad record kind");
    ++seen[payload[0]];
    at += kHeader + length;
  }
  if (at != all.size() || seen[kAccept] != accepts || seen[kFinal] != finals) {
    fail("log: records missing");
  }
}

Run run_log(const Options& o, const std::string& dir, std::size_t batch) {
  const std::string path = dir + "/deliveries.log";
  Run run;
  run.candidate = "append log + fdatasync";
  run.batch = batch;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) fail_errno("opening " + path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // The file's existence is made durable once, outside the timings.
  if (::fsync(fd) != 0) fail_errno("fsync " + path);
  fsync_path(dir, true);

  std::string body = make_body(o.bytes);
  Buffer buf;
  buf.reserve(std::min<std::size_t>(batch, o.events) * (kHeader + 64 + kIdSize + o.bytes));
  run.phases.push_back(
      run_phase("append", o.events, batch, o, [&](std::uint64_t first, std::uint64_t k) {
        buf.clear();
        for (std::uint64_t i = first; i < first + k; ++i) {
          const Event e = make_event(i, body);
          const std::size_t at = buf.begin_record();
          buf.put(kAccept);
          buf.put(e.did);
          buf.put(e.org_id);
          buf.put(e.sub_id);
          buf.put(e.next_ms);
          buf.put(static_cast<std::uint16_t>(e.event_id.size()));
          buf.put(static_cast<std::uint16_t>(kType.size()));
          buf.put(e.event_id.data(), e.event_id.size());
          buf.put(kType.data(), kType.size());
          buf.put(body.data(), body.size());
          buf.end_record(at);
        }
        write_all(fd, buf.data(), buf.size(), path);
        g_io.log_bytes += buf.size();
        datasync(fd, path);
      }));
  const std::uint64_t n = run.phases[0].events;
  run.phases.push_back(
      run_phase("final record", n, batch, o, [&](std::uint64_t first, std::uint64_t k) {
        buf.clear();
        for (std::uint64_t i = first; i < first + k; ++i) {
          const std::size_t at = buf.begin_record();
          buf.put(kFinal);
          buf.put(static_cast<std::int64_t>(i + 1));
          buf.put(std::uint8_t{1});
          buf.end_record(at);
        }
        write_all(fd, buf.data(), buf.size(), path);
        g_io.log_bytes += buf.size();
        datasync(fd, path);
      }));
  verify_log(path, n, run.phases[1].events);
  run.files = "log " + fixed(static_cast<double>(file_size(path)) / 1048576.0, 1) + " MiB";
  remove_files({path});
  return run;
}

// ---------------------------------------------------------------------------------------------
// (d) fdatasync alone.
// ---------------------------------------------------------------------------------------------
struct SyncRun {
  std::string what;
  std::uint64_t syncs = 0;
  double seconds = 0;
  bool capped = false;
};

SyncRun run_raw_sync(const Options& o, const std::string& dir, bool preallocated) {
  const std::string path = dir + "/sync.probe";
  constexpr std::size_t kBlock = 4096;
  SyncRun r;
  r.what = preallocated ? "fdatasync after a 4 KiB overwrite (blocks written and synced before)"
                        : "fdatasync after a 4 KiB append";
  const int fd = ::open(
      path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (preallocated ? 0 : O_APPEND), 0600);
  if (fd < 0) fail_errno("opening " + path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::vector<unsigned char> block(kBlock, 0x5A);
  if (preallocated) {
    const std::vector<unsigned char> zeros(kBlock * 256, 0);
    for (std::uint64_t done = 0; done < o.sync_count; done += 256) {
      write_all(fd, zeros.data(), zeros.size(), path);
    }
  }
  if (::fsync(fd) != 0) fail_errno("fsync " + path);
  fsync_path(dir, true);
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.sync_count && g_stop == 0; ++i) {
    if (preallocated) {
      const auto off = static_cast<off_t>(i * kBlock);
      if (::pwrite(fd, block.data(), kBlock, off) != static_cast<ssize_t>(kBlock)) {
        fail_errno("pwrite " + path);
      }
    } else {
      write_all(fd, block.data(), kBlock, path);
    }
    datasync(fd, path);
    ++r.syncs;
    if (i + 1 < o.sync_count && seconds_since(t0) > o.phase_seconds) {
      r.capped = true;
      break;
    }
  }
  r.seconds = seconds_since(t0);
  remove_files({path});
  return r;
}

// ---------------------------------------------------------------------------------------------
// Report.
// ---------------------------------------------------------------------------------------------
std::string events_cell(const Phase& p) {
  return with_commas(p.events) + (p.capped ? " (capped)" : "");
}

void print_summary(const std::vector<Run>& runs) {
  std::printf(
      "| candidate | batch | events | accept events/s | accept µs/event | life events/s | "
      "life syncs/s | syncs per commit | bytes written/event, accept | bytes written/event, "
      "life | life wall s |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Run& r : runs) {
    const Phase& a = r.phases.front();
    double life_s = 0;
    std::uint64_t syncs = 0;
    std::uint64_t commits = 0;
    std::uint64_t bytes = 0;
    for (const Phase& p : r.phases) {
      life_s += p.seconds;
      syncs += p.syncs;
      commits += p.commits;
      bytes += p.bytes;
    }
    const auto n = static_cast<double>(a.events);
    std::printf(
        "| %s | %zu | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.candidate.c_str(), r.batch,
        events_cell(a).c_str(), sig3(n / a.seconds).c_str(), sig3(a.seconds * 1e6 / n).c_str(),
        sig3(n / life_s).c_str(), sig3(static_cast<double>(syncs) / life_s).c_str(),
        fixed(static_cast<double>(syncs) / static_cast<double>(commits), 3).c_str(),
        with_commas(static_cast<std::uint64_t>(static_cast<double>(a.bytes) / n + 0.5)).c_str(),
        with_commas(static_cast<std::uint64_t>(static_cast<double>(bytes) / n + 0.5)).c_str(),
        fixed(life_s, 2).c_str());
  }
}

void print_phases(const std::vector<Run>& runs) {
  std::printf(
      "| candidate | batch | phase | events | wall s | events/s | µs/event | commits | syncs | "
      "syncs/s | bytes written/event |\n"
      "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Run& r : runs) {
    for (const Phase& p : r.phases) {
      const auto n = static_cast<double>(p.events);
      std::printf(
          "| %s | %zu | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.candidate.c_str(),
          r.batch, p.name.c_str(), events_cell(p).c_str(), fixed(p.seconds, 3).c_str(),
          sig3(n / p.seconds).c_str(), sig3(p.seconds * 1e6 / n).c_str(),
          with_commas(p.commits).c_str(), with_commas(p.syncs).c_str(),
          sig3(static_cast<double>(p.syncs) / p.seconds).c_str(),
          with_commas(static_cast<std::uint64_t>(static_cast<double>(p.bytes) / n + 0.5)).c_str());
    }
  }
}

int run_all(const Options& o) {
  std::string base = o.dir;
  if (base.empty()) {
    base = "/tmp";
    if (in_memory_fs(base)) base = FANOUT_JOURNAL_FALLBACK_DIR;
  } else if (in_memory_fs(base)) {
    std::fprintf(stderr,
                 "warning: %s is %s: fdatasync costs nothing there, the numbers will mislead\n",
                 base.c_str(), fs_name(base).c_str());
  }
  TempDir dir(base);
  const std::string load_before = load_average();
  const auto t0 = Clock::now();

  std::string batches;
  for (std::size_t b : o.batches) batches += (batches.empty() ? "" : ",") + std::to_string(b);
  std::printf(
      "journal_candidates: %s events of %zu B, batches %s, at most %s s per phase; dir %s (%s); "
      "SQLite %s (page 4096 B, cache and autocheckpoint at their defaults)\n\n",
      with_commas(o.events).c_str(), o.bytes, batches.c_str(), fixed(o.phase_seconds, 0).c_str(),
      dir.path.c_str(), fs_name(dir.path).c_str(), sqlite3_libversion());
  std::fflush(stdout);

  std::vector<Run> runs;
  for (const bool full : {true, false}) {
    for (std::size_t b : o.batches) {
      if (g_stop != 0) break;
      runs.push_back(run_sqlite(o, dir.path, full, b));
    }
  }
  for (std::size_t b : o.batches) {
    if (g_stop != 0) break;
    runs.push_back(run_log(o, dir.path, b));
  }
  std::vector<SyncRun> syncs;
  for (const bool preallocated : {false, true}) {
    if (g_stop != 0) break;
    syncs.push_back(run_raw_sync(o, dir.path, preallocated));
  }
  if (g_stop != 0) {
    std::fprintf(stderr, "interrupted\n");
    return 130;
  }

  std::printf(
      "Summary (life: insert + update + delete for SQLite, append + final record for "
      "the log):\n\n");
  print_summary(runs);
  std::printf("\nPer phase:\n\n");
  print_phases(runs);
  std::printf("\nfdatasync alone:\n\n| what | syncs | syncs/s | µs/sync |\n|---|---:|---:|---:|\n");
  for (const SyncRun& s : syncs) {
    std::printf("| %s | %s%s | %s | %s |\n", s.what.c_str(), with_commas(s.syncs).c_str(),
                s.capped ? " (capped)" : "", sig3(static_cast<double>(s.syncs) / s.seconds).c_str(),
                sig3(s.seconds * 1e6 / static_cast<double>(s.syncs)).c_str());
  }
  std::printf("\nFiles at the end of each run (SQLite after the deletes):\n\n");
  for (const Run& r : runs) {
    std::printf("- %s, batch %zu: %s\n", r.candidate.c_str(), r.batch, r.files.c_str());
  }
  std::printf("\nTotal wall %s s; load average %s before, %s after.\n",
              fixed(seconds_since(t0), 1).c_str(), load_before.c_str(), load_average().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    check_crc32c();
    register_counting_vfs();
    return run_all(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "journal_candidates: %s\n", e.what());
    return 1;
  }
}
