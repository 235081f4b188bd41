// Test helpers that run real peers (curl, nghttp, h2load, fanout-sink) as child processes of the
// test's own libuv loop: uv_spawn with stdout and stderr captured through pipes, so a test drives
// server and clients from one thread and waits on events, never on sleeps.
#pragma once

#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace fanout::testing {

// A fresh directory under $TMPDIR, removed with its content on destruction.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/fanout-srv-XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) (void)std::system(("rm -rf '" + path_ + "'").c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string file(std::string_view name) const {
    return path_ + "/" + std::string(name);
  }
  std::string write(std::string_view name, std::string_view content) const {
    std::ofstream(file(name), std::ios::binary)
        .write(content.data(), static_cast<std::streamsize>(content.size()));
    return file(name);
  }
  [[nodiscard]] std::string read(std::string_view name) const {
    std::ifstream in(file(name), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string path_;
};

// True when `program` is found on PATH.
inline bool have_program(const std::string& program) {
  return std::system(("command -v " + program + " >/dev/null 2>&1").c_str()) == 0;
}

// A child process on a uv loop. done() once it exited and both pipes reached EOF.
class LoopChild {
 public:
  // Called on every chunk of stdout (for reading a line as soon as it is printed).
  std::function<void(LoopChild&)> on_stdout;
  // Called once done() becomes true.
  std::function<void(LoopChild&)> on_done;

  LoopChild() = default;
  LoopChild(const LoopChild&) = delete;
  LoopChild& operator=(const LoopChild&) = delete;

  // Starts argv[0] (looked up on PATH). False with error() set if uv_spawn failed.
  bool start(uv_loop_t* loop, const std::vector<std::string>& argv) {
    argv_ = argv;
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    uv_pipe_init(loop, &out_, 0);
    uv_pipe_init(loop, &err_, 0);
    out_.data = err_.data = this;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&out_);
    stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&err_);
    uv_process_options_t opts{};
    opts.file = args[0];
    opts.args = args.data();
    opts.exit_cb = on_exit;
    opts.stdio_count = 3;
    opts.stdio = stdio;
    proc_.data = this;
    const int rc = uv_spawn(loop, &proc_, &opts);
    if (rc != 0) {
      error_ = std::string("uv_spawn ") + argv_[0] + ": " + uv_strerror(rc);
      // libuv requires closing the process handle even when spawn failed.
      open_ = 3;
      uv_close(reinterpret_cast<uv_handle_t*>(&proc_), on_closed);
      uv_close(reinterpret_cast<uv_handle_t*>(&out_), on_closed);
      uv_close(reinterpret_cast<uv_handle_t*>(&err_), on_closed);
      return false;
    }
    open_ = 3;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&out_), on_alloc, on_read);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&err_), on_alloc, on_read);
    return true;
  }

  void kill(int signum) {
    if (!exited_) (void)uv_process_kill(&proc_, signum);
  }

  [[nodiscard]] bool done() const { return open_ == 0 && started_done_; }
  [[nodiscard]] bool exited() const { return exited_; }
  [[nodiscard]] std::int64_t exit_status() const { return exit_status_; }
  [[nodiscard]] int term_signal() const { return term_signal_; }
  [[nodiscard]] const std::string& out() const { return out_text_; }
  [[nodiscard]] const std::string& err() const { return err_text_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  // For failure messages.
  [[nodiscard]] std::string describe() const {
    std::string s;
    for (const auto& a : argv_) s += a + " ";
    return s + "\n--- exit " + std::to_string(exit_status_) + " signal " +
           std::to_string(term_signal_) + "\n--- stdout:\n" + out_text_ + "\n--- stderr:\n" +
           err_text_ + "\n" + error_;
  }

 private:
  static void on_exit(uv_process_t* p, std::int64_t status, int term_signal) {
    auto* self = static_cast<LoopChild*>(p->data);
    self->exited_ = true;
    self->exit_status_ = status;
    self->term_signal_ = term_signal;
    uv_close(reinterpret_cast<uv_handle_t*>(p), on_closed);
  }
  static void on_alloc(uv_handle_t* /*h*/, std::size_t /*suggested*/, uv_buf_t* buf) {
    static char chunk[65536];
    *buf = uv_buf_init(chunk, sizeof chunk);
  }
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* self = static_cast<LoopChild*>(s->data);
    const bool is_out = s == reinterpret_cast<uv_stream_t*>(&self->out_);
    if (n > 0) {
      (is_out ? self->out_text_ : self->err_text_).append(buf->base, static_cast<std::size_t>(n));
      if (is_out && self->on_stdout) self->on_stdout(*self);
      return;
    }
    if (n < 0) {
      uv_read_stop(s);
      uv_close(reinterpret_cast<uv_handle_t*>(s), on_closed);
    }
  }
  static void on_closed(uv_handle_t* h) {
    auto* self = static_cast<LoopChild*>(h->data);
    if (--self->open_ == 0) {
      self->started_done_ = true;
      if (self->on_done) self->on_done(*self);
    }
  }

  std::vector<std::string> argv_;
  uv_process_t proc_{};
  uv_pipe_t out_{};
  uv_pipe_t err_{};
  int open_ = 0;
  bool started_done_ = false;
  bool exited_ = false;
  std::int64_t exit_status_ = -1;
  int term_signal_ = 0;
  std::string out_text_;
  std::string err_text_;
  std::string error_;
};

// The number after `key` (e.g. "\"requests\":") in `text`, or -1.
inline long long number_after(std::string_view text, std::string_view key) {
  const std::size_t at = text.find(key);
  if (at == std::string_view::npos) return -1;
  return std::strtoll(std::string(text.substr(at + key.size(), 24)).c_str(), nullptr, 10);
}

}  // namespace fanout::testing
