// The journal's append-only log (engine/journal_log.h) on its own: frames read back exactly, in
// sequence, across segments; the end of the log at a torn frame or a gap; a segment that starts
// at a frame supersedes what the segment before holds of it (an appender that failed and could
// not cut the frame off moves on to a new segment); copied segments removed.
#include "engine/journal_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "engine/journal_rows.h"
#include "tests/support/temp_dir.h"

namespace fanout::engine {
namespace {

namespace fs = std::filesystem;

using fanout::testing::TempDir;

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

std::vector<fs::path> segments(const fs::path& dir) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path());
  std::sort(v.begin(), v.end());
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
  {
    auto log = JournalLog::open(a, 1 << 20);
    ASSERT_TRUE(log.has_value());
    ASSERT_TRUE((*log)->start_appending(1).has_value());
    for (const char* tag : {"one", "two", "stale"}) {
      ASSERT_TRUE((*log)->append(batch_of(tag, 2, 10), 1).has_value());
    }
  }
  {
    auto log = JournalLog::open(b, 1 << 20);
    ASSERT_TRUE(log.has_value());
    ASSERT_TRUE((*log)->start_appending(3).has_value());
    for (const char* tag : {"fresh", "four"}) {
      ASSERT_TRUE((*log)->append(batch_of(tag, 2, 10), 1).has_value());
    }
  }
  fs::create_directories(dir);
  for (const auto& from : {a, b}) {
    for (const auto& p : segments(from)) fs::copy_file(p, dir / p.filename());
  }
  EXPECT_EQ(read_all(dir), (std::vector<std::string>{"one-0", "two-0", "fresh-0", "four-0"}));
}

TEST(JournalLogTest, TheLogEndsAtATornFrameOrAGap) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  {
    auto log = JournalLog::open(dir, 1 << 20);
    ASSERT_TRUE(log.has_value());
    ASSERT_TRUE((*log)->start_appending(1).has_value());
    for (const char* tag : {"one", "two", "three"}) {
      ASSERT_TRUE((*log)->append(batch_of(tag, 3, 10), 1).has_value());
    }
  }
  const fs::path seg = segments(dir).at(0);
  const auto size = fs::file_size(seg);
  fs::resize_file(seg, size - 1);  // frame 3 torn
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

TEST(JournalLogTest, ReleaseRemovesOnlyWhollyCopiedSegments) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "log";
  auto log = JournalLog::open(dir, 512);
  ASSERT_TRUE(log.has_value());
  ASSERT_TRUE((*log)->start_appending(1).has_value());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE((*log)->append(batch_of("r" + std::to_string(i), 3, 10), 1).has_value());
  }
  const auto before = segments(dir);
  ASSERT_GE(before.size(), 3U);
  (*log)->release(0, false);
  EXPECT_EQ(segments(dir).size(), before.size());
  (*log)->release(6, false);  // all copied, but the last segment is being appended to
  EXPECT_EQ(segments(dir).size(), 1U);
  (*log)->release(6, true);
  EXPECT_TRUE(segments(dir).empty());
  // Appending goes on in a new segment.
  ASSERT_TRUE((*log)->append(batch_of("after", 1, 11), 1).has_value());
  EXPECT_EQ(segments(dir).size(), 1U);
}

}  // namespace
}  // namespace fanout::engine
