// The journal's append-only log (journal.h, engine/README.md "Durability"): what makes an
// accepted event durable. Internal to the journal.
//
// DIR/log/ holds segments, `<first frame, 16 hex digits>.seg`. A group commit is one frame,
// written with one writev() and made durable with one fdatasync() (a new segment's directory
// entry is synced before its first frame is acknowledged):
//
//   header (48 bytes)  magic "FJL1", record count, payload size, frame number, the journal's
//                      push count through this frame, the last did given out, checksum
//   payload            the records (88 bytes each, fixed fields), then their bytes (an accept's
//                      event id, body and event type name)
//
// The checksum is XXH3-64 (libxxhash) of the header's other fields and the payload. Frame
// numbers follow each other with no gap, across segments and restarts. Reading stops at the
// first frame that is short, torn, fails its checksum or breaks the sequence: that is the end of
// the log (a frame is acknowledged only once synced, so only an unacknowledged tail can be
// torn). Files are in the host's byte order: a log is read back by the machine that wrote it.
//
// Threads: one appends (the journal's writer), one reads (at open, then the indexer that copies
// frames into SQLite), and the reader only reads frames the appender has synced.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <tl/expected.hpp>

#include "engine/journal.h"

namespace fanout::engine {

class JournalLog {
 public:
  // Opens (creates) `dir` and lists its segments; nothing is read yet.
  [[nodiscard]] static tl::expected<std::unique_ptr<JournalLog>, std::string> open(
      const std::filesystem::path& dir, std::uint64_t segment_bytes);
  ~JournalLog();
  JournalLog(const JournalLog&) = delete;
  JournalLog& operator=(const JournalLog&) = delete;

  using Cursor = JournalLogCursor;
  struct Frame {
    std::uint64_t number = 0, pushes = 0, last_did = 0, size = 0;  // size: header and payload
  };
  // Reads the frame at `at` into `batch` (cleared first) and moves past it. false: the log ends
  // there, or the next frame is past `until`. An I/O error other than the end is an error.
  [[nodiscard]] tl::expected<bool, std::string> read(Cursor& at, std::uint64_t until,
                                                     Journal::Batch& batch, Frame& frame);

  // After recovery, every frame read is in SQLite for good: removes every segment and starts a
  // new one at frame `next` (synced with its directory entry).
  [[nodiscard]] tl::expected<void, std::string> start_appending(std::uint64_t next);
  // Appends `batch` as the next frame and syncs it. On failure the segment is cut back to where
  // the frame began, and the same frame number is used by the next call.
  [[nodiscard]] tl::expected<std::uint64_t, std::string> append(const Journal::Batch& batch,
                                                                std::uint64_t pushes);
  // Removes the segments whose frames are all <= `applied` (durable elsewhere), never the one
  // being appended to unless `all`.
  void release(std::uint64_t applied, bool all);
  // Whether release(applied, false) would remove a segment.
  [[nodiscard]] bool releasable(std::uint64_t applied) const;

  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_; }

 private:
  struct Segment {
    std::uint64_t first = 0;
    std::filesystem::path path;
  };
  explicit JournalLog(std::filesystem::path dir, std::uint64_t segment_bytes)
      : dir_(std::move(dir)), segment_bytes_(segment_bytes) {}
  [[nodiscard]] tl::expected<void, std::string> new_segment(std::uint64_t first);
  // The segment after the one starting at `first`, when it starts at frame `next`.
  [[nodiscard]] bool segment_at(std::uint64_t first, std::uint64_t next) const;
  [[nodiscard]] std::filesystem::path path_of(std::uint64_t first) const;
  // Whether the frame at `at` is there, whole and next in sequence; reads it into `batch`.
  [[nodiscard]] tl::expected<bool, std::string> read_here(const Cursor& at, Journal::Batch& batch,
                                                          Frame& frame, std::uint64_t& size);

  std::filesystem::path dir_;
  std::uint64_t segment_bytes_;
  mutable std::mutex mu_;          // segments_
  std::vector<Segment> segments_;  // oldest first
  // The appender's state.
  int fd_ = -1;
  std::uint64_t size_ = 0;              // of the segment being appended to
  std::atomic<std::uint64_t> next_{0};  // the next frame's number (read by release())
  std::string head_;                    // header and records of one frame
  std::uint64_t written_ = 0;
  // The reader's open segment.
  int read_fd_ = -1;
  std::uint64_t read_first_ = 0;
};

}  // namespace fanout::engine
