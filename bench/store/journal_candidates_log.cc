// journal_candidates, candidates (c) and (d): an append-only log of CRC32C-checksummed records
// with one fdatasync per batch, and fdatasync alone (bench/store/journal_candidates.cc says what
// is measured).
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "bench/store/journal_candidates.h"

namespace fanout::bench::journal {

namespace {

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

}  // namespace

void check_crc32c() {
  static constexpr std::string_view kCheck = "123456789";  // the standard check value
  std::array<unsigned char, 9> bytes{};
  std::memcpy(bytes.data(), kCheck.data(), bytes.size());
  if (crc32c(bytes.data(), bytes.size()) != 0xE3069283u) fail("CRC32C self-check failed");
}

// ---------------------------------------------------------------------------------------------
// (c) The append log.
// ---------------------------------------------------------------------------------------------
namespace {

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

}  // namespace

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

}  // namespace fanout::bench::journal
