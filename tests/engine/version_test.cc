#include "fanout/version.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

namespace fanout {
namespace {

TEST(VersionTest, IsSemanticVersion) {
  const std::string v(version());
  int major = -1, minor = -1, patch = -1;
  ASSERT_EQ(std::sscanf(v.c_str(), "%d.%d.%d", &major, &minor, &patch), 3) << v;
  EXPECT_GE(major, 0);
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
