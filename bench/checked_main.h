// main() of the Google Benchmark programs: a benchmark whose correctness check failed
// (State::SkipWithError) makes the program exit 1, so that its bench-smoke test fails; Google
// Benchmark itself prints the error and exits 0. A run that matches no benchmark exits 1 too.
//
//   FANOUT_BENCHMARK_MAIN();                                 // the --benchmark_format reporter
//   return fanout::bench::run_checked(argc, argv, &mine);    // a reporter of the program's own
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

namespace fanout::bench {

// Passes every call on to `inner` and remembers the runs that ended in error.
class ErrorCheckingReporter final : public benchmark::BenchmarkReporter {
 public:
  explicit ErrorCheckingReporter(benchmark::BenchmarkReporter* inner) : inner_(inner) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) errors_.push_back(run.benchmark_name() + ": " + run.error_message);
    }
    inner_->ReportRuns(runs);
  }
  void Finalize() override { inner_->Finalize(); }

  [[nodiscard]] const std::vector<std::string>& errors() const { return errors_; }

 private:
  benchmark::BenchmarkReporter* inner_;
  std::vector<std::string> errors_;
};

// Initializes the library from the command line, runs the selected benchmarks with `display`
// (nullptr: the reporter --benchmark_format names) and returns main()'s exit status.
inline int run_checked(int argc, char** argv, benchmark::BenchmarkReporter* display = nullptr) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // CreateDefaultDisplayReporter returns an object the library keeps for the process' lifetime.
  ErrorCheckingReporter checked(display != nullptr ? display
                                                   : benchmark::CreateDefaultDisplayReporter());
  const std::size_t ran = benchmark::RunSpecifiedBenchmarks(&checked);
  benchmark::Shutdown();
  for (const std::string& e : checked.errors()) {
    std::fprintf(stderr, "benchmark failed: %s\n", e.c_str());
  }
  if (!checked.errors().empty()) return 1;
  if (ran == 0) {
    std::fprintf(stderr, "no benchmark matched --benchmark_filter\n");
    return 1;
  }
  return 0;
}

}  // namespace fanout::bench

#define FANOUT_BENCHMARK_MAIN()                    \
  int main(int argc, char** argv) {                \
    return fanout::bench::run_checked(argc, argv); \
  }                                                \
  int main(int, char**)
