// Tests that need a peer program nobody here wrote (curl, nghttpd, nginx, openssl, ...): when it
// is missing the test is skipped, except under CI (environment variable CI set and not empty),
// where a test that cannot run is a failure: a green CI run means every test ran.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>

// Not fanout::testing: in a test inside namespace fanout, that name would hide ::testing.
namespace fanout::test_support {

// True when running in CI: the environment variable CI is set and not empty.
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0';
}

}  // namespace fanout::test_support

// In a void function of a test (SetUp, a TEST body): returns after skipping the test, or after
// failing it under CI. `what` is streamed into the message (e.g. "nghttpd").
#define FANOUT_MISSING_PEER(what)                                                                \
  do {                                                                                           \
    if (::fanout::test_support::in_ci()) {                                                       \
      GTEST_FAIL() << "missing test peer " << (what)                                             \
                   << " (CI is set: a test that cannot run is a failure; tools/install-deps.sh " \
                      "installs it)";                                                            \
    }                                                                                            \
    GTEST_SKIP() << "missing test peer " << (what);                                              \
  } while (false)
