// FANOUT_TEST_SANITIZED is 1 in an AddressSanitizer or ThreadSanitizer build (GCC's
// __SANITIZE_*__ macros, Clang's __has_feature): tests that load the machine use fewer events
// there, since sanitizers slow everything down several times.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FANOUT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FANOUT_TEST_SANITIZED 1
#endif
#endif
