// DirLock: one process at a time per directory, for fanoutd's journal directory.
//
// Several fanoutd instances may share a data directory (the store), but never a journal: each
// instance recovers what its journal holds at start, so two instances on one journal would
// deliver each other's events. DirLock takes an advisory lock (flock(2), LOCK_EX | LOCK_NB) on
// DIR/journal.lock and keeps its descriptor open for the life of the object, normally the
// process's: the kernel releases it on any exit, kill -9 included, so a crash never leaves a
// stale lock. The file holds the holder's pid, for the error message only (the lock is the
// flock, not the file's content or existence).
//
// flock locks belong to the open file description: a second DirLock on the same directory in
// the same process fails too. Local file systems only (on NFS flock may be emulated or absent).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <tl/expected.hpp>

namespace fanout::daemon {

class DirLock {
 public:
  // Creates `dir` (and parents) if missing, then locks DIR/journal.lock. The error names the
  // directory and, when another live process holds the lock, its pid and what to do ("give
  // each instance its own --journal-dir").
  [[nodiscard]] static tl::expected<std::unique_ptr<DirLock>, std::string> acquire(
      const std::filesystem::path& dir);
  ~DirLock();  // releases the lock (closes the descriptor)
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) noexcept : fd_(fd) {}
  int fd_;
};

}  // namespace fanout::daemon
