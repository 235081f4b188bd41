// The journal's append-only log (journal.h, engine/README.md "Durability"): what makes an
// accepted event durable. Internal to the journal.
//
// DIR/log/ holds segments, `<first frame, 16 hex digits>.seg`. A group commit is one frame,
// written with one pwritev() and made durable with one fdatasync() (a new segment's directory
// entry is synced before its first frame is acknowledged). A segment is:
//
//   segment header     one page (4 KiB): magic "FJS1", the page size, the segment's first
//                      frame number, a random seed, checksum; zeros to the end of the page
//   frames, each       header (48 bytes): magic "FJL1", record count, payload size, frame
//   starting on a page number, the journal's push count through this frame, the last did given
//                      out, checksum
//                      payload: the records (88 bytes each, fixed fields), then their bytes (an
//                      accept's event id, body and event type name); zeros to the next page
//
// Checksums are XXH3-64 (libxxhash) seeded with the segment's seed: of the segment header's
// other fields, and of a frame's header fields and payload. Frame numbers follow each other with
// no gap, across segments and restarts. Reading stops at the first frame that is short, torn,
// fails its checksum or breaks the sequence: that is the end of the log (a frame is acknowledged
// only once synced, so only an unacknowledged tail can be torn). A segment whose header is not
// whole, or names another first frame, holds nothing. Files are in the host's byte order: a log
// is read back by the machine that wrote it. (A segment without a segment header is read as the
// first format wrote it: frames back to back from byte 0, checksums unseeded.)
//
// Recycling. A released segment is not removed but renamed `spare-<16 hex digits>` (at most
// kSpareSegments of them, the rest are removed), and a new segment is a spare renamed, with a new
// header and seed, whenever there is one. Its blocks are allocated and written, and each frame
// is written as whole pages: an append then changes no file-system metadata (no block allocation,
// no size change, no read of a partly written page), so its fdatasync writes the frame's pages
// and flushes the device, without a file-system journal commit (which, in ext4's ordered mode,
// also waits for every other file's newly allocated data: SQLite's copy). Stale frames in a
// recycled segment fail the checksum under the new seed, and their numbers are behind.
//
// Threads: one appends (the journal's writer), one reads (at open, then the indexer that copies
// frames into SQLite) and releases, and the reader only reads frames the appender has synced.
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
  // The segment header's size, and what every frame starts on.
  static constexpr std::uint64_t kPage = 4096;
  static constexpr std::size_t kSpareSegments = 2;  // released segments kept to be reused
  // Opens (creates) `dir` and lists its segments; nothing is read yet.
  [[nodiscard]] static tl::expected<std::unique_ptr<JournalLog>, std::string> open(
      const std::filesystem::path& dir, std::uint64_t segment_bytes);
  ~JournalLog();
  JournalLog(const JournalLog&) = delete;
  JournalLog& operator=(const JournalLog&) = delete;

  using Cursor = JournalLogCursor;
  struct Frame {
    // size: the bytes it takes in its segment (header, payload and the padding to a page)
    std::uint64_t number = 0, pushes = 0, last_did = 0, size = 0;
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
  // Retires the segments whose frames are all <= `applied` (durable elsewhere), never the one
  // being appended to unless `all`: kept as spares (up to kSpareSegments), or removed.
  void release(std::uint64_t applied, bool all);
  // Whether release(applied, false) would remove a segment.
  [[nodiscard]] bool releasable(std::uint64_t applied) const;

  // Bytes of frames appended (any thread).
  [[nodiscard]] std::uint64_t bytes_written() const noexcept {
    return written_.load(std::memory_order_relaxed);
  }
  // Segments started from a spare, and spares kept now.
  [[nodiscard]] std::uint64_t recycled() const noexcept {
    return recycled_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::size_t spares() const;

 private:
  struct Segment {
    std::uint64_t first = 0;
    std::filesystem::path path;
  };
  explicit JournalLog(std::filesystem::path dir, std::uint64_t segment_bytes)
      : dir_(std::move(dir)), segment_bytes_(segment_bytes) {}
  [[nodiscard]] tl::expected<void, std::string> new_segment(std::uint64_t first);
  // Opens a spare renamed to `path` for writing, or -1 (none, or it could not be renamed).
  int take_spare(const std::filesystem::path& path);
  // Keeps the segment at `path` as a spare, or removes it. Outside mu_.
  void retire(const std::filesystem::path& path);
  // The segment after the one starting at `first`, when it starts at frame `next`.
  [[nodiscard]] bool segment_at(std::uint64_t first, std::uint64_t next) const;
  [[nodiscard]] std::filesystem::path path_of(std::uint64_t first) const;
  // Opens the segment starting at `first` for reading and reads its header. false: not there.
  [[nodiscard]] tl::expected<bool, std::string> open_for_reading(std::uint64_t first);
  // Whether the frame at `at` is there, whole and next in sequence; reads it into `batch`, and
  // where the next frame starts into `end`.
  [[nodiscard]] tl::expected<bool, std::string> read_here(const Cursor& at, Journal::Batch& batch,
                                                          Frame& frame, std::uint64_t& end);

  std::filesystem::path dir_;
  std::uint64_t segment_bytes_;
  mutable std::mutex mu_;          // segments_, spares_, spare_name_
  std::vector<Segment> segments_;  // oldest first
  std::vector<std::filesystem::path> spares_;
  std::uint64_t spare_name_ = 0;            // the last spare's number
  std::atomic<std::uint64_t> recycled_{0};  // segments started from a spare
  // The appender's state.
  int fd_ = -1;
  std::uint64_t size_ = 0;              // where the next frame goes in the segment
  std::uint64_t seed_ = 0;              // the segment's
  std::atomic<std::uint64_t> next_{0};  // the next frame's number (read by release())
  std::string head_;                    // header and records of one frame
  std::atomic<std::uint64_t> written_{0};
  // The reader's open segment: whether its header is whole (or it has none), its seed, where
  // its first frame is and the size frames are rounded up to.
  int read_fd_ = -1;
  std::uint64_t read_first_ = 0;
  bool read_valid_ = false;
  std::uint64_t read_seed_ = 0, read_start_ = 0, read_align_ = 1;
};

}  // namespace fanout::engine
