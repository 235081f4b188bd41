// DirLock (tools/fanoutd/dir_lock.h): one holder per journal directory; released with its
// holder. Across processes (and kill -9) it is exercised by shared_dir_test.py.
#include "tools/fanoutd/dir_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace fanout::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class DirLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "fanoutd_dir_lock.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path root_;
};

TEST_F(DirLockTest, CreatesTheDirectoryAndRecordsThePid) {
  const fs::path dir = root_ / "a" / "journal";
  auto lock = DirLock::acquire(dir);
  ASSERT_TRUE(lock.has_value()) << lock.error();
  std::ifstream f(dir / "journal.lock");
  std::string pid;
  f >> pid;
  EXPECT_EQ(pid, std::to_string(getpid()));
}

TEST_F(DirLockTest, SecondHolderIsRefusedWithWhatToDo) {
  auto first = DirLock::acquire(root_);
  ASSERT_TRUE(first.has_value()) << first.error();
  auto second = DirLock::acquire(root_);
  ASSERT_FALSE(second.has_value());
  EXPECT_THAT(second.error(), HasSubstr("journal directory " + root_.string()));
  EXPECT_THAT(second.error(), HasSubstr("pid " + std::to_string(getpid())));
  EXPECT_THAT(second.error(), HasSubstr("--journal-dir"));
}

TEST_F(DirLockTest, ReleasedWithItsHolder) {
  {
    auto first = DirLock::acquire(root_);
    ASSERT_TRUE(first.has_value()) << first.error();
  }
  auto again = DirLock::acquire(root_);
  EXPECT_TRUE(again.has_value()) << (again ? std::string() : again.error());
}

TEST_F(DirLockTest, OtherDirectoriesAreIndependent) {
  auto a = DirLock::acquire(root_ / "a");
  auto b = DirLock::acquire(root_ / "b");
  EXPECT_TRUE(a.has_value());
  EXPECT_TRUE(b.has_value());
}

TEST_F(DirLockTest, UnusableDirectoryIsAnError) {
  const fs::path file = root_ / "plain-file";
  std::ofstream(file) << "x";
  auto lock = DirLock::acquire(file / "journal");
  ASSERT_FALSE(lock.has_value());
  EXPECT_THAT(lock.error(), HasSubstr(file.string()));
}

}  // namespace
}  // namespace fanout::daemon
