// See hugepages.h.
#include "tools/fanoutd/hugepages.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

namespace fanout::daemon {

namespace {

constexpr std::string_view kTunable = "glibc.malloc.hugetlb";

// "always [madvise] never": huge pages are there for madvise() unless "[never]" is chosen.
bool kernel_offers_huge_pages() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(f, line)) return false;
  return line.find("[never]") == std::string::npos;
}

}  // namespace

void reexec_with_huge_pages(char** argv) noexcept {
  try {
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    const std::string_view now = tunables != nullptr ? tunables : "";
    if (now.find(kTunable) != std::string_view::npos) return;
    if (const char* off = std::getenv("FANOUT_MALLOC_HUGETLB"); off != nullptr && *off == '0') {
      return;
    }
    if (const char* pre = std::getenv("LD_PRELOAD");
        pre != nullptr && std::string_view(pre).find("vgpreload") != std::string_view::npos) {
      return;
    }
    if (!kernel_offers_huge_pages()) return;
    std::string value(now);
    if (!value.empty()) value += ':';
    value += kTunable;
    value += "=1";
    if (setenv("GLIBC_TUNABLES", value.c_str(), 1) != 0) return;
    // The program's own path rather than /proc/self/exe, whose name ("exe") would become the
    // process's name in ps, top and pkill.
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    execv(self, argv);
    // Still here: exec failed; run as we are (the variable stays set, which is harmless).
  } catch (...) {
    // Out of memory building the value: run as we are.
  }
}

}  // namespace fanout::daemon
