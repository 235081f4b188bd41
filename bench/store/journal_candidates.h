// journal_candidates (bench/store/journal_candidates.cc): what its three files share. The
// program's options, the event each candidate makes durable, the I/O counters, a phase (a batch at
// a time until the events are done or the time is up), and the candidates themselves:
// journal_candidates_sqlite.cc (a, b: SQLite WAL through a counting VFS) and
// journal_candidates_log.cc (c, d: the CRC32C append log and fdatasync alone).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout::bench::journal {

using Clock = std::chrono::steady_clock;

// Set by SIGINT or SIGTERM: phases stop at the next batch.
extern volatile std::sig_atomic_t g_stop;

// Errors are exceptions, caught in main.
[[noreturn]] void fail(const std::string& what);
[[noreturn]] void fail_errno(const std::string& what);

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// I/O counters: the SQLite VFS and the log code add to them.
struct IoCounters {
  std::uint64_t syncs = 0;
  std::uint64_t wal_bytes = 0;   // written to the -wal file
  std::uint64_t db_bytes = 0;    // written to the database file (checkpoints)
  std::uint64_t log_bytes = 0;   // written to the append log
  std::uint64_t wal_extent = 0;  // the furthest byte written in the -wal file
};
extern IoCounters g_io;

struct Options {
  std::uint64_t events = 200000;
  std::size_t bytes = 700;
  std::vector<std::size_t> batches = {1, 50, 500, 5000};
  double phase_seconds = 10.0;
  std::uint64_t sync_count = 2000;
  std::string dir;  // empty: /tmp, or the build directory if /tmp is tmpfs
};

inline constexpr std::string_view kType = "business_updated";
inline constexpr std::size_t kIdSize = 32;  // "evt_" and 28 hex digits

// One delivery's fields; the body is shared, its first 16 bytes replaced by the event number.
struct Event {
  std::int64_t did;
  std::int64_t org_id;
  std::int64_t sub_id;
  std::int64_t next_ms;
  std::array<char, kIdSize> event_id;
};

// Event number `i`; its number is also written into the first 16 bytes of `body`.
Event make_event(std::uint64_t i, std::string& body);
// A JSON-looking body of exactly `bytes` bytes.
std::string make_body(std::size_t bytes);
// `v` with `decimals` digits after the point.
std::string fixed(double v, int decimals);
std::uint64_t file_size(const std::string& path);
void fsync_path(const std::string& path, bool directory);
void remove_files(std::initializer_list<std::string> files);

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
// The candidates.
// ---------------------------------------------------------------------------------------------
// (a), (b) journal_candidates_sqlite.cc. register_counting_vfs() once before the first run.
void register_counting_vfs();
Run run_sqlite(const Options& o, const std::string& dir, bool full, std::size_t batch);

// (c), (d) journal_candidates_log.cc. check_crc32c() fails when the CRC32C is wrong.
void check_crc32c();
Run run_log(const Options& o, const std::string& dir, std::size_t batch);
struct SyncRun {
  std::string what;
  std::uint64_t syncs = 0;
  double seconds = 0;
  bool capped = false;
};
SyncRun run_raw_sync(const Options& o, const std::string& dir, bool preallocated);

}  // namespace fanout::bench::journal
