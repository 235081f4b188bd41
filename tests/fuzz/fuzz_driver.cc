// The fuzz targets' main() where libFuzzer is not available (g++, every CI build): replays a seed
// corpus, then a fixed number of deterministic mutations of it, through the target's
// LLVMFuzzerTestOneInput. No clock and no time limit: the same arguments run the same inputs.
//
//   <target> [--runs N] [--seed S] [--max-len L] [--dict FILE] [--only K] [--save DIR] PATH...
//
// PATH: corpus files or directories (files read in name order). Mutation k (0 <= k < N) starts
// from seed file k mod (number of files) and applies 1 to 4 edits drawn from a generator seeded
// with (S, k) alone, so `--only K` replays mutation K by itself. A failing target aborts (an
// invariant, ASan or UBSan); before dying the driver writes the input to DIR/crash-<target>
// (--save, default the current directory) and prints the mutation's number and seed.
//
// Under CI (environment variable CI set and not empty), or when FANOUT_FUZZ_EXTRA_SEED is set,
// the N mutations of S are followed by N more of a second seed: FANOUT_FUZZ_EXTRA_SEED, or else
// one drawn at random. Both seeds are printed before any input runs, so a failure under the
// random one replays with --seed <it> (or FANOUT_FUZZ_EXTRA_SEED=<it>).
#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

// The sanitizer runtime's death callback, when one is linked (ASan or TSan; not in release).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FANOUT_FUZZ_HAVE_SANITIZER_API 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FANOUT_FUZZ_HAVE_SANITIZER_API 1
#endif
#endif
#ifdef FANOUT_FUZZ_HAVE_SANITIZER_API
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

// splitmix64: small, good enough for choosing edits, and the same on every platform.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n); n > 0.
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }

 private:
  std::uint64_t state_;
};

using Bytes = std::string;

// Bytes that matter to JSON, HTTP and the limits the targets check.
constexpr std::string_view kInterestingBytes = "\"{}[]:,\\\n\r\t 0-+.eE/%?=&\x7f\x80\xc0\xff";
// Tokens every target's inputs are made of; a --dict file adds the target's own.
const std::vector<std::string> kBaseTokens = {"\"",
                                              "{",
                                              "}",
                                              "[",
                                              "]",
                                              ":",
                                              ",",
                                              "null",
                                              "true",
                                              "\\u",
                                              "\\ud800",
                                              "0",
                                              "-1",
                                              "1e400",
                                              "\r\n",
                                              "\n",
                                              "\xed\xa0\x80",
                                              "\xf4\x90\x80\x80",
                                              "9223372036854775807",
                                              "9223372036854775808",
                                              "123456789012345678901234567890"};

struct Driver {
  std::string name;
  std::vector<Bytes> corpus;
  std::vector<std::string> tokens = kBaseTokens;
  std::size_t max_len = 64 * 1024;
  std::string save_dir = ".";
  const Bytes* current = nullptr;  // the input running, for the death callback
  std::uint64_t seed = 1;
  long long mutation = -1;  // its number, -1 for a seed file
};

Driver* g_driver = nullptr;

void save_current() {
  if (g_driver == nullptr || g_driver->current == nullptr) return;
  const std::string path = g_driver->save_dir + "/crash-" + g_driver->name;
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(g_driver->current->data(), 1, g_driver->current->size(), f);
    std::fclose(f);
    std::fprintf(stderr, "fuzz driver: the failing input is in %s\n", path.c_str());
  }
  if (g_driver->mutation >= 0) {
    std::fprintf(stderr, "fuzz driver: mutation %lld; replay it with --seed %llu --only %lld\n",
                 g_driver->mutation, static_cast<unsigned long long>(g_driver->seed),
                 g_driver->mutation);
  }
}

void on_abort(int /*signal*/) {
  save_current();
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

bool read_file(const fs::path& p, Bytes& out) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (f == nullptr) return false;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool ok = std::ferror(f) == 0;
  std::fclose(f);
  return ok;
}

// A libFuzzer dictionary: one "token" per line (C escapes \\, \" and \xNN); others ignored.
void read_dict(const std::string& path, std::vector<std::string>& tokens) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t open = line.find('"');
    const std::size_t close = line.rfind('"');
    if (line.empty() || line[0] == '#' || open == std::string::npos || close <= open) continue;
    std::string token;
    for (std::size_t i = open + 1; i < close; ++i) {
      if (line[i] == '\\' && i + 1 < close) {
        if (line[i + 1] == 'x' && i + 3 < close) {
          token.push_back(static_cast<char>(std::stoi(line.substr(i + 2, 2), nullptr, 16)));
          i += 3;
        } else {
          token.push_back(line[++i]);
        }
      } else {
        token.push_back(line[i]);
      }
    }
    if (!token.empty()) tokens.push_back(token);
  }
}

void mutate_once(Bytes& b, Rng& rng, const Driver& d) {
  const std::size_t pos = b.empty() ? 0 : rng.below(b.size() + 1);
  switch (rng.below(10)) {
    case 0:  // flip one bit
      if (!b.empty()) b[rng.below(b.size())] ^= static_cast<char>(1u << rng.below(8));
      break;
    case 1:  // one random byte
      if (!b.empty()) b[rng.below(b.size())] = static_cast<char>(rng.below(256));
      break;
    case 2:  // one byte that matters
      if (!b.empty()) {
        b[rng.below(b.size())] = kInterestingBytes[rng.below(kInterestingBytes.size())];
      }
      break;
    case 3:  // delete a range
      if (!b.empty())
        b.erase(rng.below(b.size()), 1 + rng.below(std::min<std::size_t>(b.size(), 16)));
      break;
    case 4: {  // insert random bytes
      const std::size_t n = 1 + rng.below(8);
      for (std::size_t i = 0; i < n; ++i)
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<char>(rng.below(256)));
      break;
    }
    case 5:  // duplicate a range elsewhere (repeated fields, nesting, pipelining)
      if (!b.empty()) {
        const std::size_t from = rng.below(b.size());
        const std::size_t len = 1 + rng.below(std::min<std::size_t>(b.size() - from, 256));
        b.insert(pos, b.substr(from, len));
      }
      break;
    case 6:
    case 7:  // insert or overwrite with a token
    {
      const std::string& t = d.tokens[rng.below(d.tokens.size())];
      if (rng.below(2) == 0 || pos + t.size() > b.size()) {
        b.insert(pos, t);
      } else {
        b.replace(pos, t.size(), t);
      }
      break;
    }
    case 8: {  // splice with another seed: this one's head, that one's tail
      const Bytes& other = d.corpus[rng.below(d.corpus.size())];
      const std::size_t cut = other.empty() ? 0 : rng.below(other.size());
      b = b.substr(0, pos) + other.substr(cut);
      break;
    }
    default:  // truncate
      b.resize(pos);
      break;
  }
  if (b.size() > d.max_len) b.resize(d.max_len);
}

void run_one(Driver& d, const Bytes& input) {
  d.current = &input;
  // A copy of exactly input.size() bytes, so that ASan sees any read past the end.
  std::vector<std::uint8_t> copy(input.begin(), input.end());
  // As libFuzzer does, an empty input is a valid pointer and a size of 0.
  static const std::uint8_t kEmpty = 0;
  (void)LLVMFuzzerTestOneInput(copy.empty() ? &kEmpty : copy.data(), copy.size());
  d.current = nullptr;
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--runs N] [--seed S] [--max-len L] [--dict FILE] [--only K] "
               "[--save DIR] CORPUS...\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Driver d;
  d.name = fs::path(argv[0]).filename().string();
  std::uint64_t runs = 1000;
  long long only = -1;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--runs" && has_value) {
      runs = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--seed" && has_value) {
      d.seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--max-len" && has_value) {
      d.max_len = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--dict" && has_value) {
      read_dict(argv[++i], d.tokens);
    } else if (a == "--only" && has_value) {
      only = std::strtoll(argv[++i], nullptr, 10);
    } else if (a == "--save" && has_value) {
      d.save_dir = argv[++i];
    } else if (a.starts_with("--")) {
      usage(argv[0]);
    } else if (fs::is_directory(a)) {
      std::vector<fs::path> dir;
      for (const auto& e : fs::directory_iterator(a)) {
        if (e.is_regular_file()) dir.push_back(e.path());
      }
      std::sort(dir.begin(), dir.end());
      files.insert(files.end(), dir.begin(), dir.end());
    } else {
      files.emplace_back(a);
    }
  }
  for (const auto& f : files) {
    Bytes b;
    if (!read_file(f, b)) {
      std::fprintf(stderr, "%s: cannot read %s\n", d.name.c_str(), f.string().c_str());
      return 2;
    }
    d.corpus.push_back(std::move(b));
  }
  if (d.corpus.empty()) usage(argv[0]);

  g_driver = &d;
  std::signal(SIGABRT, on_abort);
#ifdef FANOUT_FUZZ_HAVE_SANITIZER_API
  __sanitizer_set_death_callback(save_current);
#endif

  // The seeds whose mutations run: --seed, then under CI (or FANOUT_FUZZ_EXTRA_SEED) a second.
  std::vector<std::uint64_t> seeds = {d.seed};
  const char* extra = std::getenv("FANOUT_FUZZ_EXTRA_SEED");
  const char* ci = std::getenv("CI");
  if (only < 0 && extra != nullptr && *extra != '\0') {
    seeds.push_back(std::strtoull(extra, nullptr, 10));
  } else if (only < 0 && ci != nullptr && *ci != '\0') {
    std::random_device random;
    seeds.push_back((std::uint64_t{random()} << 32) | random());
  }
  std::fprintf(stderr, "%s: mutations of seed %llu", d.name.c_str(),
               static_cast<unsigned long long>(seeds[0]));
  if (seeds.size() > 1) {
    std::fprintf(stderr, ", then of seed %llu (%s; replay: --seed %llu)",
                 static_cast<unsigned long long>(seeds[1]),
                 extra != nullptr && *extra != '\0' ? "FANOUT_FUZZ_EXTRA_SEED" : "random, CI set",
                 static_cast<unsigned long long>(seeds[1]));
  }
  std::fprintf(stderr, "\n");

  std::size_t seeds_run = 0;
  if (only < 0) {
    for (std::size_t i = 0; i < d.corpus.size(); ++i) {
      run_one(d, d.corpus[i]);
      ++seeds_run;
    }
  }
  const std::uint64_t first = only < 0 ? 0 : static_cast<std::uint64_t>(only);
  const std::uint64_t last = only < 0 ? runs : first + 1;
  for (const std::uint64_t seed : seeds) {
    d.seed = seed;
    for (std::uint64_t k = first; k < last; ++k) {
      Rng rng(d.seed * 0x100000001b3ULL ^ (k + 1) * 0x9e3779b97f4a7c15ULL);
      Bytes b = d.corpus[k % d.corpus.size()];
      const std::size_t edits = 1 + rng.below(4);
      for (std::size_t e = 0; e < edits; ++e) mutate_once(b, rng, d);
      d.mutation = static_cast<long long>(k);
      run_one(d, b);
    }
    std::fprintf(stderr, "%s: %zu seeds and %llu mutations (seed %llu) passed\n", d.name.c_str(),
                 seeds_run, static_cast<unsigned long long>(last - first),
                 static_cast<unsigned long long>(d.seed));
  }
  return 0;
}
