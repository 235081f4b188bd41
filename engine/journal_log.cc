// The journal's append-only log (journal_log.h).
#include "engine/journal_log.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "engine/journal_rows.h"

namespace fanout::engine {
namespace {

constexpr std::uint32_t kMagic = 0x314c4a46;         // "FJL1" in a little-endian file
constexpr std::uint32_t kSegmentMagic = 0x31534a46;  // "FJS1"
constexpr std::uint64_t kMaxFrame = std::uint64_t{1} << 32;
constexpr std::uint64_t kPage = JournalLog::kPage;
alignas(64) constexpr char kZeros[kPage] = {};

struct SegmentHeader {
  std::uint32_t magic;
  std::uint32_t page;
  std::uint64_t first;
  std::uint64_t seed;
  std::uint64_t checksum;
};
static_assert(sizeof(SegmentHeader) == 32 &&
              std::has_unique_object_representations_v<SegmentHeader>);
constexpr std::size_t kSegmentChecked = offsetof(SegmentHeader, checksum);

struct Header {
  std::uint32_t magic;
  std::uint32_t records;
  std::uint64_t size;  // payload: records then bytes
  std::uint64_t number;
  std::uint64_t pushes;
  std::uint64_t last_did;
  std::uint64_t checksum;
};
static_assert(sizeof(Header) == 48 && std::has_unique_object_representations_v<Header>);
constexpr std::size_t kChecked = offsetof(Header, checksum);

struct Wire {
  std::int64_t did, org_id, subscription_id, time_ms, next_ms, resend_of;
  std::uint64_t offset;
  std::uint32_t n, duration_us, id_size, body_size, type_size;
  std::int32_t status;
  std::uint16_t type;
  std::uint8_t kind, flags, outcome, failure;
  std::uint16_t reserved;
};
static_assert(sizeof(Wire) == 88 && std::has_unique_object_representations_v<Wire>);
constexpr std::uint8_t kHasOutcome = 1, kRememberId = 2;

std::string os_error(std::string_view what, const std::filesystem::path& p, int err) {
  std::string m(what);
  m += ' ';
  m += p.string();
  m += ": ";
  m += std::strerror(err);
  return m;
}

std::uint64_t checksum(std::uint64_t seed, const void* header, const void* records,
                       std::size_t records_size, const void* bytes, std::size_t bytes_size) {
  const XXH64_hash_t h = XXH3_64bits_withSeed(header, kChecked, seed);
  const XXH64_hash_t r = XXH3_64bits_withSeed(records, records_size, h);
  return XXH3_64bits_withSeed(bytes, bytes_size, r);
}

Wire to_wire(const Journal::Record& r) {
  Wire w{};
  w.did = r.did;
  w.org_id = r.org_id;
  w.subscription_id = r.subscription_id;
  w.time_ms = r.time_ms;
  w.next_ms = r.next_ms;
  w.resend_of = r.resend_of;
  w.offset = r.offset;
  w.n = r.n;
  w.duration_us = r.duration_us;
  w.id_size = r.id_size;
  w.body_size = r.body_size;
  w.type_size = r.type_size;
  w.status = r.status;
  w.type = r.type;
  w.kind = static_cast<std::uint8_t>(r.kind);
  w.flags = static_cast<std::uint8_t>((r.has_outcome ? kHasOutcome : 0) |
                                      (r.remember_id ? kRememberId : 0));
  w.outcome = static_cast<std::uint8_t>(r.outcome);
  w.failure = static_cast<std::uint8_t>(r.failure);
  return w;
}

// false: a record that no writer of this format makes (the frame is not ours, or damaged in a
// way its checksum missed).
bool from_wire(const Wire& w, std::uint64_t bytes_size, Journal::Record& r) {
  if (w.kind > static_cast<std::uint8_t>(Journal::Record::Kind::kFinal)) return false;
  const std::uint64_t need = std::uint64_t{w.id_size} + w.body_size + w.type_size;
  if (w.offset > bytes_size || need > bytes_size - w.offset) return false;
  r.kind = static_cast<Journal::Record::Kind>(w.kind);
  r.has_outcome = (w.flags & kHasOutcome) != 0;
  r.remember_id = (w.flags & kRememberId) != 0;
  r.outcome = static_cast<OutcomeKind>(w.outcome);
  r.failure = static_cast<transport::Failure>(w.failure);
  r.type = w.type;
  r.n = w.n;
  r.status = w.status;
  r.duration_us = w.duration_us;
  r.did = w.did;
  r.org_id = w.org_id;
  r.subscription_id = w.subscription_id;
  r.time_ms = w.time_ms;
  r.next_ms = w.next_ms;
  r.resend_of = w.resend_of;
  r.offset = static_cast<std::size_t>(w.offset);
  r.id_size = w.id_size;
  r.body_size = w.body_size;
  r.type_size = w.type_size;
  return true;
}

// pread until `n` bytes or the end of the file; the bytes read, or -1 with errno.
ssize_t read_at(int fd, void* to, std::size_t n, std::uint64_t at) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r =
        ::pread(fd, static_cast<char*>(to) + done, n - done, static_cast<off_t>(at + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

std::uint64_t round_up(std::uint64_t n, std::uint64_t to) {
  return (n + to - 1) / to * to;
}

// Writes all of `iov` at `at`; 0 or an errno.
int write_all_at(int fd, iovec* iov, int count, std::uint64_t at) {
  while (count > 0) {
    const ssize_t w = ::pwritev(fd, iov, count, static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    at += static_cast<std::uint64_t>(w);
    auto left = static_cast<std::size_t>(w);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

std::uint64_t random_seed() {
  std::uint64_t seed = 0;
  while (seed == 0) {
    if (::getrandom(&seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) {
      seed =
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
  }
  return seed;
}

bool sync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

tl::expected<std::unique_ptr<JournalLog>, std::string> JournalLog::open(
    const std::filesystem::path& dir, std::uint64_t segment_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return tl::unexpected("journal log: creating " + dir.string() + ": " + ec.message());
  std::unique_ptr<JournalLog> log(new JournalLog(dir, std::max<std::uint64_t>(segment_bytes, 1)));
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::uint64_t first = 0;
    int used = 0;
    if (name.size() == 22 &&
        std::sscanf(name.c_str(), "spare-%16" SCNx64 "%n", &first, &used) == 1 && used == 22) {
      log->spares_.push_back(entry.path());
      log->spare_name_ = std::max(log->spare_name_, first);
      continue;
    }
    if (name.size() != 20 || name.compare(16, 4, ".seg") != 0 ||
        std::sscanf(name.c_str(), "%16" SCNx64 "%n", &first, &used) != 1 || used != 16 ||
        first == 0) {
      continue;
    }
    log->segments_.push_back({first, entry.path()});
  }
  if (ec) return tl::unexpected("journal log: listing " + dir.string() + ": " + ec.message());
  std::sort(log->segments_.begin(), log->segments_.end(),
            [](const Segment& a, const Segment& b) { return a.first < b.first; });
  return log;
}

JournalLog::~JournalLog() {
  if (fd_ >= 0) ::close(fd_);
  if (read_fd_ >= 0) ::close(read_fd_);
}

std::filesystem::path JournalLog::path_of(std::uint64_t first) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016" PRIx64 ".seg", first);
  return dir_ / name;
}

bool JournalLog::segment_at(std::uint64_t first, std::uint64_t next) const {
  std::lock_guard lock(mu_);
  return std::any_of(segments_.begin(), segments_.end(),
                     [&](const Segment& s) { return s.first > first && s.first == next; });
}

// --- reading ------------------------------------------------------------------------------------

tl::expected<bool, std::string> JournalLog::open_for_reading(std::uint64_t first) {
  if (read_fd_ >= 0 && read_first_ == first) return true;
  if (read_fd_ >= 0) ::close(read_fd_);
  read_first_ = first;
  read_valid_ = false;
  read_fd_ = ::open(path_of(first).c_str(), O_RDONLY | O_CLOEXEC);
  if (read_fd_ < 0) {
    if (errno == ENOENT) return false;
    return tl::unexpected(os_error("journal log: opening", path_of(first), errno));
  }
  SegmentHeader sh{};
  const ssize_t got = read_at(read_fd_, &sh, sizeof sh, 0);
  if (got < 0) return tl::unexpected(os_error("journal log: reading", path_of(first), errno));
  if (static_cast<std::size_t>(got) == sizeof sh && sh.magic == kSegmentMagic) {
    // A recycled segment whose new header never reached the disk still has its old one: it
    // names another first frame, and holds nothing.
    read_valid_ = sh.page == kPage && sh.first == first &&
                  XXH3_64bits_withSeed(&sh, kSegmentChecked, sh.seed) == sh.checksum;
    read_seed_ = sh.seed;
    read_start_ = kPage;
    read_align_ = kPage;
  } else {
    // No segment header: the first format, frames back to back from byte 0, unseeded.
    read_valid_ = true;
    read_seed_ = 0;
    read_start_ = 0;
    read_align_ = 1;
  }
  return true;
}

tl::expected<bool, std::string> JournalLog::read_here(const Cursor& at, Journal::Batch& batch,
                                                      Frame& frame, std::uint64_t& end) {
  auto opened = open_for_reading(at.first);
  if (!opened || !*opened) return opened;
  if (!read_valid_) return false;
  const std::uint64_t offset = std::max(at.offset, read_start_);
  Header h{};
  const ssize_t got = read_at(read_fd_, &h, sizeof h, offset);
  if (got < 0) return tl::unexpected(os_error("journal log: reading", path_of(at.first), errno));
  if (static_cast<std::size_t>(got) < sizeof h || h.magic != kMagic || h.number != at.next ||
      h.size > kMaxFrame || h.size < std::uint64_t{h.records} * sizeof(Wire)) {
    return false;
  }
  batch.clear();
  const std::size_t records_size = std::size_t{h.records} * sizeof(Wire);
  std::vector<Wire> wire(h.records);
  batch.bytes.resize(static_cast<std::size_t>(h.size) - records_size);
  if (read_at(read_fd_, wire.data(), records_size, offset + sizeof h) !=
          static_cast<ssize_t>(records_size) ||
      read_at(read_fd_, batch.bytes.data(), batch.bytes.size(), offset + sizeof h + records_size) !=
          static_cast<ssize_t>(batch.bytes.size())) {
    batch.clear();
    return false;  // short: a torn tail (an I/O error reads as one too: the log ends there)
  }
  if (checksum(read_seed_, &h, wire.data(), records_size, batch.bytes.data(), batch.bytes.size()) !=
      h.checksum) {
    batch.clear();
    return false;
  }
  batch.records.resize(h.records);
  for (std::size_t i = 0; i < wire.size(); ++i) {
    if (!from_wire(wire[i], batch.bytes.size(), batch.records[i])) {
      batch.clear();
      return false;
    }
  }
  batch.last_did = h.last_did;
  batch.pushes = h.pushes;
  // The padding after the frame is not read: a frame is whole without it.
  end = offset + round_up(sizeof h + h.size, read_align_);
  frame = {h.number, h.pushes, h.last_did, end - offset};
  return true;
}

tl::expected<bool, std::string> JournalLog::read(Cursor& at, std::uint64_t until,
                                                 Journal::Batch& batch, Frame& frame) {
  if (at.first == 0) {
    std::lock_guard lock(mu_);
    if (segments_.empty()) return false;
    at.first = segments_.front().first;
    at.offset = 0;
    if (at.next == 0) at.next = at.first;
  }
  if (at.next > until) return false;
  // A segment that starts at the frame expected holds it: the appender starts one where the last
  // ended (full), or after a frame whose write or sync failed and could not be cut off, which
  // may still be there, even whole, at the end of this one.
  if (segment_at(at.first, at.next)) {
    at.first = at.next;
    at.offset = 0;
  }
  // Frames up to `until` are synced, so their segment is already listed: the check above is
  // the only move to another segment a read needs.
  std::uint64_t end = 0;
  auto here = read_here(at, batch, frame, end);
  if (!here || !*here) return here;
  at.offset = end;
  ++at.next;
  return true;
}

// --- appending ----------------------------------------------------------------------------------

int JournalLog::take_spare(const std::filesystem::path& path) {
  for (;;) {
    std::filesystem::path spare;
    {
      std::lock_guard lock(mu_);
      if (spares_.empty()) return -1;
      spare = std::move(spares_.back());
      spares_.pop_back();
    }
    if (::rename(spare.c_str(), path.c_str()) == 0) {
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        recycled_.fetch_add(1, std::memory_order_relaxed);
        return fd;
      }
      std::error_code ec;
      std::filesystem::remove(path, ec);
    } else {
      std::error_code ec;
      std::filesystem::remove(spare, ec);
    }
  }
}

tl::expected<void, std::string> JournalLog::new_segment(std::uint64_t first) {
  if (fd_ >= 0) ::close(fd_);
  const std::filesystem::path path = path_of(first);
  fd_ = take_spare(path);
  if (fd_ < 0) fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return tl::unexpected(os_error("journal log: creating", path, errno));
  // The header goes to disk with the first frame's fdatasync; until then the segment holds
  // nothing a reader takes (a spare's old header names another first frame).
  seed_ = random_seed();
  SegmentHeader sh{kSegmentMagic, static_cast<std::uint32_t>(kPage), first, seed_, 0};
  sh.checksum = XXH3_64bits_withSeed(&sh, kSegmentChecked, seed_);
  iovec iov[2] = {{&sh, sizeof sh}, {const_cast<char*>(kZeros), kPage - sizeof sh}};
  if (const int err = write_all_at(fd_, iov, 2, 0); err != 0) {
    ::close(fd_);
    fd_ = -1;
    return tl::unexpected(os_error("journal log: writing", path, err));
  }
  size_ = kPage;
  if (!sync_dir(dir_)) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;  // the next frame starts the segment again
    return tl::unexpected(os_error("journal log: syncing", dir_, err));
  }
  std::lock_guard lock(mu_);
  if (segments_.empty() || segments_.back().first != first) segments_.push_back({first, path});
  return {};
}

void JournalLog::retire(const std::filesystem::path& path) {
  std::error_code ec;
  // A short segment (cut back after a failed write, or from a log that stopped early) is not
  // worth keeping: appending past its end allocates again.
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size >= segment_bytes_ / 2) {
    std::filesystem::path spare;
    {
      std::lock_guard lock(mu_);
      if (spares_.size() < kSpareSegments) {
        char name[32];
        std::snprintf(name, sizeof name, "spare-%016" PRIx64, ++spare_name_);
        spare = dir_ / name;
      }
    }
    if (!spare.empty() && ::rename(path.c_str(), spare.c_str()) == 0) {
      std::lock_guard lock(mu_);
      spares_.push_back(std::move(spare));
      return;
    }
  }
  std::filesystem::remove(path, ec);
}

std::size_t JournalLog::spares() const {
  std::lock_guard lock(mu_);
  return spares_.size();
}

tl::expected<void, std::string> JournalLog::start_appending(std::uint64_t next) {
  std::vector<Segment> old;
  {
    std::lock_guard lock(mu_);
    old.swap(segments_);
  }
  if (read_fd_ >= 0) ::close(read_fd_);
  read_fd_ = -1;
  for (const Segment& s : old) retire(s.path);
  next_.store(std::max<std::uint64_t>(next, 1), std::memory_order_release);
  return new_segment(next_.load(std::memory_order_relaxed));
}

tl::expected<std::uint64_t, std::string> JournalLog::append(const Journal::Batch& batch,
                                                            std::uint64_t pushes) {
  Header h{};
  h.magic = kMagic;
  h.records = static_cast<std::uint32_t>(batch.records.size());
  const std::size_t records_size = batch.records.size() * sizeof(Wire);
  h.size = records_size + batch.bytes.size();
  h.number = next_.load(std::memory_order_relaxed);
  h.pushes = pushes;
  h.last_did = batch.last_did;
  if (batch.records.size() > UINT32_MAX || h.size > kMaxFrame) {
    return tl::unexpected(std::string("journal log: a group commit over 4 GiB"));
  }
  head_.resize(sizeof h + records_size);
  for (std::size_t i = 0; i < batch.records.size(); ++i) {
    const Wire w = to_wire(batch.records[i]);
    std::memcpy(head_.data() + sizeof h + i * sizeof(Wire), &w, sizeof w);
  }
  // A frame is written as whole pages: in a recycled segment no page is read first.
  const std::uint64_t frame_size = round_up(head_.size() + batch.bytes.size(), kPage);
  if (fd_ < 0 || (size_ > kPage && size_ + frame_size > segment_bytes_)) {
    if (auto s = new_segment(h.number); !s) return tl::unexpected(std::move(s.error()));
  }
  h.checksum = checksum(seed_, &h, head_.data() + sizeof h, records_size, batch.bytes.data(),
                        batch.bytes.size());
  std::memcpy(head_.data(), &h, sizeof h);
  iovec iov[3] = {{head_.data(), head_.size()},
                  {const_cast<char*>(batch.bytes.data()), batch.bytes.size()},
                  {const_cast<char*>(kZeros), frame_size - head_.size() - batch.bytes.size()}};
  int err = write_all_at(fd_, iov, iov[2].iov_len > 0 ? 3 : 2, size_);
  if (err == 0 && ::fdatasync(fd_) != 0) err = errno;
  if (err != 0) {
    // The frame is not acknowledged; cut it off so that the next one follows the last whole
    // frame. If even that fails, the next frame goes to a new segment (a reader moves there
    // when this one ends in something that is not the frame it expects).
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 || ::fdatasync(fd_) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    return tl::unexpected(os_error("journal log: appending to", path_of(h.number), err));
  }
  size_ += frame_size;
  written_.fetch_add(frame_size, std::memory_order_relaxed);
  next_.store(h.number + 1, std::memory_order_release);
  return h.number;
}

bool JournalLog::releasable(std::uint64_t applied) const {
  std::lock_guard lock(mu_);
  return segments_.size() > 1 && segments_[1].first <= applied + 1;
}

void JournalLog::release(std::uint64_t applied, bool all) {
  std::vector<std::filesystem::path> gone;
  {
    std::lock_guard lock(mu_);
    std::size_t keep = 0;
    while (keep < segments_.size()) {
      const bool last = keep + 1 == segments_.size();
      const std::uint64_t end = last ? next_.load(std::memory_order_acquire)
                                     : segments_[keep + 1].first;  // one past its last
      if ((last && !all) || end > applied + 1) break;
      gone.push_back(segments_[keep].path);
      ++keep;
    }
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(keep));
    if (segments_.empty() && fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  for (const auto& p : gone) retire(p);
}

}  // namespace fanout::engine
