#include "fanout/version.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

namespace fanout {
namespace {

// The version is the project's (CMakeLists.txt `project(fanout VERSION ...)`, passed to this
// test by the build) and nothing else: exactly three dot-separated decimal numbers.
TEST(VersionTest, IsTheProjectsSemanticVersion) {
  const std::string v(version());
  EXPECT_EQ(v, FANOUT_PROJECT_VERSION);
  int major = -1, minor = -1, patch = -1, end = 0;
  ASSERT_EQ(std::sscanf(v.c_str(), "%d.%d.%d%n", &major, &minor, &patch, &end), 3) << v;
  EXPECT_EQ(static_cast<std::size_t>(end), v.size()) << "nothing after MAJOR.MINOR.PATCH: " << v;
  EXPECT_EQ(v, std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch))
      << "no sign, no leading zeros: " << v;
  EXPECT_GT(major + minor + patch, 0) << "not 0.0.0: " << v;
}

// Proves every runtime dependency is linked and answers at run time (BoringSSL through its
// rpath, llhttp from node-llhttp's sources, libuv and nghttp2 from their packages).
TEST(VersionTest, ReportsEveryLinkedDependency) {
  std::set<std::string> names;
  for (const auto& [name, ver] : dependency_versions()) {
    EXPECT_FALSE(ver.empty()) << name;
    names.insert(name);
  }
  EXPECT_EQ(names, (std::set<std::string>{"libuv", "nghttp2", "BoringSSL", "llhttp", "simdjson",
                                          "libsodium", "moodycamel::ConcurrentQueue"}));
  for (const auto& [name, ver] : dependency_versions()) {
    if (name == "BoringSSL") {
      EXPECT_NE(ver.find("BoringSSL"), std::string::npos) << ver;
    }
    if (name == "simdjson") {
      EXPECT_EQ(ver, "3.0.1");
    }
  }
}

}  // namespace
}  // namespace fanout
