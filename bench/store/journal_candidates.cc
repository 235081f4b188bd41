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
// The candidates are in journal_candidates_sqlite.cc (a, b) and journal_candidates_log.cc (c, d);
// what the three files share, in journal_candidates.h.
//
// Run:
//   build/jbench/bench/journal_candidates [--events 200000] [--bytes 700]
//       [--batches 1,50,500,5000] [--phase-seconds 10] [--sync-count 2000] [--dir DIR]
#include "bench/store/journal_candidates.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#ifndef FANOUT_JOURNAL_FALLBACK_DIR
#define FANOUT_JOURNAL_FALLBACK_DIR "."
#endif

namespace fanout::bench::journal {

volatile std::sig_atomic_t g_stop = 0;
IoCounters g_io;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what);
}
[[noreturn]] void fail_errno(const std::string& what) {
  fail(what + ": " + std::error_code(errno, std::generic_category()).message());
}

namespace {

void on_signal(int) {
  g_stop = 1;
}

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

}  // namespace

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

namespace {

std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v);
  for (std::size_t i = s.size(); i > 3; i -= 3) s.insert(i - 3, ",");
  return s;
}

}  // namespace

std::string fixed(double v, int decimals) {
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
  return buf.data();
}

namespace {

// Three significant digits at most, no thousands separator below 1,000.
std::string sig3(double v) {
  if (v == 0) return "0";
  if (v >= 999.5) return with_commas(static_cast<std::uint64_t>(v + 0.5));
  if (v >= 99.95) return fixed(v, 0);
  if (v >= 9.995) return fixed(v, 1);
  return fixed(v, 2);
}

}  // namespace

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

namespace {

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

}  // namespace

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) fail_errno("opening " + path);
  if (::fsync(fd) != 0) fail_errno("fsync " + path);
  ::close(fd);
}

namespace {

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

}  // namespace

void remove_files(std::initializer_list<std::string> files) {
  for (const auto& f : files) ::unlink(f.c_str());
}

namespace {

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

}  // namespace fanout::bench::journal

int main(int argc, char** argv) {
  using namespace fanout::bench::journal;
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