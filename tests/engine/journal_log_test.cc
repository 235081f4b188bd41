// The journal's append-only log (engine/journal_log.h) on its own: frames read back exactly, in
// sequence, across segments; the end of the log at a torn frame or a gap; a segment that starts
// at a frame supersedes what the segment before holds of it (an appender that failed and could
// not cut the frame off moves on to a new segment); copied segments kept as spares or removed;
// a recycled segment's stale frames never read; a segment of the first format still read.
#include "engine/journal_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <system_error>
#include <vector>

#include "engine/journal_rows.h"
#include "tests/support/temp_dir.h"

namespace fanout::engine {
namespace {

namespace fs = std::filesystem;

using fanout::testing::read_file;
using fanout::testing::TempDir;
using fanout::testing::write_file;

// A batch of `n` accepts whose ids and bodies name `tag`.
Journal::Batch batch_of(const std::string& tag, int n, std::uint64_t last_did) {
  Journal::Batch b;
  for (int i = 0; i < n; ++i) {
    Journal::Record r;
    r.kind = Journal::Record::Kind::kAccept;
    r.did = static_cast<std::int64_t>(last_did) - n + 1 + i;
    r.org_id = 7;
    r.offset = b.bytes.size();
    const std::string id = tag + "-" + std::to_string(i);
    const std::string body =
        "{\"body\":\"" + tag + std::string(static_cast<std::size_t>(i), 'x') + "\"}";
    r.id_size = static_cast<std::uint32_t>(id.size());
    r.body_size = static_cast<std::uint32_t>(body.size());
    r.type_size = 4;
    b.bytes += id + body + "type";
    b.records.push_back(r);
  }
  b.last_did = last_did;
  return b;
}

// The first id of each frame read from `dir`'s log, from its oldest segment to the end.
std::vector<std::string> read_all(const fs::path& dir,
                                  std::vector<std::uint64_t>* numbers = nullptr) {
  std::vector<std::string> out;
  auto log = JournalLog::open(dir, 1 << 20);
  EXPECT_TRUE(log.has_value());
  if (!log) return out;
  JournalLog::Cursor at;
  Journal::Batch b;
  JournalLog::Frame f;
  for (;;) {
    auto more = (*log)->read(at, UINT64_MAX, b, f);
    EXPECT_TRUE(more.has_value());
    if (!more || !*more) break;
    const auto& r = b.records.at(0);
    out.push_back(b.bytes.substr(r.offset, r.id_size));
    if (numbers != nullptr) numbers->push_back(f.number);
  }
  return out;
}

// A log in `dir` (segments of 1 MiB) starting at frame `first`, one frame of `per_frame`
// accepts for each tag.
void write_log(const fs::path& dir, std::uint64_t first, std::initializer_list<const char*> tags,
               int per_frame) {
  auto log = JournalLog::open(dir, 1 << 20);
  ASSERT_TRUE(log.has_value()) << log.error();
  ASSERT_TRUE((*log)->start_appending(first).has_value());
  for (const char* tag : tags) {
    ASSERT_TRUE((*log)->append(batch_of(tag, per_frame, 10), 1).has_value());
  }
}

// The segments (`*.seg`) in `dir`, or its spares (`spare-*`).
std::vector<fs::path> segments(const fs::path& dir, bool spares = false) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(dir)) {
    const bool spare = e.path().filename().string().starts_with("spare-");
    if (spare == spares) v.push_back(e.path());
  }
  std::sort(v.begin(), v.end());
  return v;
}

std::uint64_t u64_at(const std::string& s, std::size_t at) {
  std::uint64_t v = 0;
  std::memcpy(&v, s.data() + at, sizeof v);
  return v;
}

TEST(JournalLogTest, FramesComeBackExactlyInSequenceAcrossSegments) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  {
    // Segments of 1 KiB: every frame or two starts a new one.
    auto log = JournalLog::open(dir, 1024);
    ASSERT_TRUE(log.has_value()) << log.error();
    ASSERT_TRUE((*log)->start_appending(5).has_value());
    for (int i = 0; i < 8; ++i) {
      const auto u = static_cast<std::uint64_t>(i);
      auto n = (*log)->append(batch_of("f" + std::to_string(i), 1 + i % 4, 100 + u), 10 + u);
      ASSERT_TRUE(n.has_value()) << n.error();
      EXPECT_EQ(*n, 5U + u);
    }
  }
  EXPECT_GE(segments(dir).size(), 3U);
  std::vector<std::uint64_t> numbers;
  const auto ids = read_all(dir, &numbers);
  ASSERT_EQ(ids.size(), 8U);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(ids[i], "f" + std::to_string(i) + "-0");
    EXPECT_EQ(numbers[i], 5U + i);
  }
  // Every byte of every record back, bodies included.
  auto log = JournalLog::open(dir, 1024);
  ASSERT_TRUE(log.has_value());
  JournalLog::Cursor at;
  Journal::Batch b;
  JournalLog::Frame f;
  ASSERT_TRUE((*log)->read(at, UINT64_MAX, b, f).value_or(false));
  const Journal::Batch want = batch_of("f0", 1, 100);
  EXPECT_EQ(b.bytes, want.bytes);
  EXPECT_EQ(b.last_did, 100U);
  EXPECT_EQ(f.pushes, 10U);
  // `until` stops before a frame past it.
  JournalLog::Cursor at2;
  int read = 0;
  while ((*log)->read(at2, 7, b, f).value_or(false)) ++read;
  EXPECT_EQ(read, 3);  // frames 5, 6, 7
}

TEST(JournalLogTest, ASegmentStartingAtAFrameSupersedesTheOneBefore) {
  TempDir tmp;
  const fs::path a = tmp.path() / "a", b = tmp.path() / "b", dir = tmp.path() / "log";
  // Segment 1 holds frames 1, 2 and a whole frame 3 ("stale": its sync was reported failed);
  // the appender then went on in a new segment starting at 3 ("fresh" 3, then 4).
  ASSERT_NO_FATAL_FAILURE(write_log(a, 1, {"one", "two", "stale"}, 2));
  ASSERT_NO_FATAL_FAILURE(write_log(b, 3, {"fresh", "four"}, 2));
  fs::create_directories(dir);
  for (const auto& from : {a, b}) {
    for (const auto& p : segments(from)) fs::copy_file(p, dir / p.filename());
  }
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0", "fresh-0", "four-0"}));
}

TEST(JournalLogTest, TheLogEndsAtATornFrameOrAGap) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  ASSERT_NO_FATAL_FAILURE(write_log(dir, 1, {"one", "two", "three"}, 3));
  const fs::path seg = segments(dir).at(0);
  const auto size = fs::file_size(seg);
  // The segment's header page, then one page per frame (each ends in zeros to the next page).
  ASSERT_EQ(size, 4 * JournalLog::kPage);
  fs::resize_file(seg, size - 1);  // only frame 3's padding: it is whole
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0", "three-0"}));
  fs::resize_file(seg, size - JournalLog::kPage + 60);  // frame 3 torn
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0"}));
  // A segment that starts past the end (frame 5, where 3 is expected) is not read.
  {
    const fs::path other = tmp.path() / "other";
    auto log = JournalLog::open(other, 1 << 20);
    ASSERT_TRUE(log.has_value());
    ASSERT_TRUE((*log)->start_appending(5).has_value());
    ASSERT_TRUE((*log)->append(batch_of("five", 1, 20), 1).has_value());
    log->reset();
    for (const auto& p : segments(other)) fs::copy_file(p, dir / p.filename());
  }
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0"}));
}

TEST(JournalLogTest, ReleaseKeepsTwoSparesAndRemovesTheRest) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  // Segments of 512 bytes: every frame starts a new one.
  auto log = JournalLog::open(dir, 512);
  ASSERT_TRUE(log.has_value());
  ASSERT_TRUE((*log)->start_appending(1).has_value());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE((*log)->append(batch_of("r" + std::to_string(i), 3, 10), 1).has_value());
  }
  const auto before = segments(dir);
  ASSERT_EQ(before.size(), 6U);
  EXPECT_EQ((*log)->recycled(), 0U);
  (*log)->release(0, false);
  EXPECT_EQ(segments(dir).size(), before.size());
  EXPECT_TRUE(segments(dir, true).empty());
  (*log)->release(6, false);  // all copied, but the last segment is being appended to
  EXPECT_EQ(segments(dir).size(), 1U);
  EXPECT_EQ(segments(dir, true).size(), JournalLog::kSpareSegments);
  EXPECT_EQ((*log)->spares(), JournalLog::kSpareSegments);
  (*log)->release(6, true);
  EXPECT_TRUE(segments(dir).empty());
  EXPECT_EQ(segments(dir, true).size(), JournalLog::kSpareSegments) << "no more spares kept";
  // Appending goes on in a new segment, a spare renamed.
  ASSERT_TRUE((*log)->append(batch_of("after", 1, 11), 1).has_value());
  EXPECT_EQ(segments(dir).size(), 1U);
  EXPECT_EQ(segments(dir, true).size(), JournalLog::kSpareSegments - 1);
  EXPECT_EQ((*log)->recycled(), 1U);
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"after-0"}));
  // Spares outlive the log: the next one to open the directory reuses them.
  log->reset();
  auto again = JournalLog::open(dir, 512);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)->spares(), JournalLog::kSpareSegments - 1);
}

TEST(JournalLogTest, ARecycledSegmentsOldFramesAreNeverRead) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  std::string old_bytes;
  {
    // One segment of large frames (frames 1-3, ~140 KB in a segment of 200 KB), retired as a
    // spare (it is over half the segment size).
    auto log = JournalLog::open(dir, 200000);
    ASSERT_TRUE(log.has_value());
    ASSERT_TRUE((*log)->start_appending(1).has_value());
    for (const char* tag : {"old1", "old2", "old3"}) {
      ASSERT_TRUE((*log)->append(batch_of(tag, 200, 10), 1).has_value());
    }
    (*log)->release(3, true);
    ASSERT_EQ(segments(dir, true).size(), 1U);
    old_bytes = read_file(segments(dir, true).at(0));
    // Frames 4 and 5 in it, each smaller than the frame before at its place.
    for (const char* tag : {"new4", "new5"}) {
      ASSERT_TRUE((*log)->append(batch_of(tag, 1, 11), 1).has_value());
    }
    EXPECT_EQ((*log)->recycled(), 1U);
  }
  ASSERT_EQ(segments(dir).size(), 1U);
  const fs::path seg = segments(dir).at(0);
  EXPECT_EQ(seg.filename(), "0000000000000004.seg");
  EXPECT_EQ(fs::file_size(seg), old_bytes.size()) << "overwritten in place, not cut";
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"new4-0", "new5-0"}));
  // Frame 1's old bytes placed where frame 6 is expected, renumbered 6 and checksummed without
  // the segment's seed (as anything not written into this segment is): not read. Checksummed
  // with the segment's seed, the same bytes are frame 6: the seed is what keeps them out.
  const std::string current = read_file(seg);
  const std::size_t size = 48 + u64_at(old_bytes, JournalLog::kPage + 8);
  std::string frame = old_bytes.substr(JournalLog::kPage, size);
  const std::uint64_t six = 6;
  std::memcpy(frame.data() + 16, &six, sizeof six);  // the frame number
  const std::uint64_t records = 200;
  auto checksummed = [&](std::uint64_t seed) {
    const XXH64_hash_t h = XXH3_64bits_withSeed(frame.data(), 40, seed);
    const XXH64_hash_t r = XXH3_64bits_withSeed(frame.data() + 48, records * 88, h);
    const XXH64_hash_t b =
        XXH3_64bits_withSeed(frame.data() + 48 + records * 88, size - 48 - records * 88, r);
    std::string with(current);
    with.replace(3 * JournalLog::kPage, size, frame);
    std::memcpy(with.data() + 3 * JournalLog::kPage + 40, &b, sizeof b);
    return with;
  };
  write_file(seg, checksummed(0));
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"new4-0", "new5-0"}));
  write_file(seg, checksummed(u64_at(current, 16)));
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"new4-0", "new5-0", "old1-0"}));
  // A crash after the spare was renamed and before its new header reached the disk leaves the
  // old header, which names frame 1: the segment holds nothing.
  write_file(seg, old_bytes);
  EXPECT_TRUE(read_all(dir).empty());
}

// A segment as the first format wrote it: no segment header, frames back to back from byte 0,
// their checksums unseeded. Made from a segment of this format.
TEST(JournalLogTest, ASegmentOfTheFirstFormatIsStillRead) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  ASSERT_NO_FATAL_FAILURE(write_log(dir, 1, {"one", "two", "three"}, 3));
  const fs::path seg = segments(dir).at(0);
  const std::string now = read_file(seg);
  std::string first;
  for (std::size_t at = JournalLog::kPage; at + 48 <= now.size();) {
    const std::size_t size = 48 + u64_at(now, at + 8);
    std::string frame = now.substr(at, size);
    const std::uint64_t records = std::uint64_t{static_cast<unsigned char>(frame[4])} |
                                  std::uint64_t{static_cast<unsigned char>(frame[5])} << 8;
    const XXH64_hash_t h = XXH3_64bits(frame.data(), 40);
    const XXH64_hash_t r = XXH3_64bits_withSeed(frame.data() + 48, records * 88, h);
    const XXH64_hash_t b =
        XXH3_64bits_withSeed(frame.data() + 48 + records * 88, size - 48 - records * 88, r);
    std::memcpy(frame.data() + 40, &b, sizeof b);
    first += frame;
    at = (at + size + JournalLog::kPage - 1) / JournalLog::kPage * JournalLog::kPage;
  }
  write_file(seg, first);
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0", "three-0"}));
  write_file(seg, first.substr(0, first.size() - 1));
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0"}));
}

}  // namespace
}  // namespace fanout::engine
