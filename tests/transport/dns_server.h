// A tiny authoritative DNS server for tests, on the test's own loop: UDP on 127.0.0.1, port 0.
// Per name it answers A records, or nothing at all (a black hole: the query is read,
// counted and dropped); every other name is NXDOMAIN. AAAA queries for names with A records get an
// empty NOERROR answer (NODATA). Answer packets are built by hand here; this is a fixture, not a
// resolver.
#pragma once

#include <arpa/inet.h>
#include <uv.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace fanout::testing {

class DnsServer {
 public:
  explicit DnsServer(uv_loop_t* loop) {
    uv_udp_init(loop, &udp_);
    udp_.data = this;
    sockaddr_in a{};
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_udp_bind(&udp_, reinterpret_cast<const sockaddr*>(&a), 0);
    int len = sizeof a;
    uv_udp_getsockname(&udp_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    uv_udp_recv_start(&udp_, on_alloc, on_recv);
  }
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  // "127.0.0.1:PORT", for ClientOptions::dns_servers.
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // `name` (lower case, no trailing dot) answers these IPv4 addresses with this TTL.
  void add(const std::string& name, std::vector<std::string> ipv4, std::uint32_t ttl = 300) {
    answers_[name] = {std::move(ipv4), ttl};
  }
  // Every name ending in `suffix` is a black hole.
  void black_hole_suffix(const std::string& suffix) { black_hole_suffix_ = suffix; }

  // Queries received for `name` (any type), answered or not.
  [[nodiscard]] int seen(const std::string& name) const {
    auto it = seen_.find(name);
    return it == seen_.end() ? 0 : it->second;
  }
  // Distinct names seen.
  [[nodiscard]] std::size_t names_seen() const { return seen_.size(); }
  [[nodiscard]] int queries() const { return queries_; }

  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&udp_), nullptr); }

 private:
  struct Answer {
    std::vector<std::string> ipv4;
    std::uint32_t ttl = 300;
  };

  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* self = static_cast<DnsServer*>(h->data);
    *buf = uv_buf_init(self->buf_, sizeof self->buf_);
  }

  static void on_recv(uv_udp_t* udp, ssize_t n, const uv_buf_t* buf, const sockaddr* from,
                      unsigned) {
    if (n <= 0 || from == nullptr) return;
    static_cast<DnsServer*>(udp->data)->handle(reinterpret_cast<const std::uint8_t*>(buf->base),
                                               static_cast<std::size_t>(n), from);
  }

  static void put16(std::string& out, std::uint32_t v) {
    out.push_back(static_cast<char>((v >> 8) & 0xff));
    out.push_back(static_cast<char>(v & 0xff));
  }

  void handle(const std::uint8_t* q, std::size_t n, const sockaddr* from) {
    if (n < 12) return;
    // The question: labels up to the zero byte, then QTYPE and QCLASS.
    std::size_t i = 12;
    std::string name;
    while (i < n && q[i] != 0) {
      const std::size_t len = q[i];
      if (i + 1 + len > n) return;
      if (!name.empty()) name.push_back('.');
      for (std::size_t k = 0; k < len; ++k) {
        const char c = static_cast<char>(q[i + 1 + k]);
        name.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
      }
      i += 1 + len;
    }
    if (i + 5 > n) return;
    const std::size_t question_end = i + 5;
    const unsigned qtype = (unsigned{q[i + 1]} << 8) | q[i + 2];
    ++queries_;
    ++seen_[name];
    if (!black_hole_suffix_.empty() && name.size() >= black_hole_suffix_.size() &&
        name.compare(name.size() - black_hole_suffix_.size(), std::string::npos,
                     black_hole_suffix_) == 0) {
      return;  // dropped: the client waits for its timeout
    }
    unsigned rcode = 0;
    const Answer* answer = nullptr;
    if (auto it = answers_.find(name); it != answers_.end()) {
      answer = &it->second;
    } else {
      rcode = 3;  // NXDOMAIN: every name not configured
    }
    const std::size_t count = answer != nullptr && qtype == 1 ? answer->ipv4.size() : 0;
    std::string out;
    out.push_back(static_cast<char>(q[0]));  // id
    out.push_back(static_cast<char>(q[1]));
    out.push_back(static_cast<char>(0x84 | (q[2] & 0x01)));  // QR, AA, RD copied
    out.push_back(static_cast<char>(0x80 | rcode));          // RA, rcode
    put16(out, 1);                                           // QDCOUNT
    put16(out, static_cast<std::uint32_t>(count));           // ANCOUNT
    put16(out, 0);
    put16(out, 0);
    out.append(reinterpret_cast<const char*>(q + 12), question_end - 12);
    for (std::size_t k = 0; k < count; ++k) {
      put16(out, 0xc00c);  // the name: a pointer to the question's
      put16(out, 1);       // A
      put16(out, 1);       // IN
      put16(out, answer->ttl >> 16);
      put16(out, answer->ttl & 0xffff);
      put16(out, 4);
      in_addr a{};
      inet_pton(AF_INET, answer->ipv4[k].c_str(), &a);
      out.append(reinterpret_cast<const char*>(&a), 4);
    }
    uv_buf_t b = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
    uv_udp_try_send(&udp_, &b, 1, from);
  }

  uv_udp_t udp_{};
  std::uint16_t port_ = 0;
  char buf_[1500];
  std::map<std::string, Answer> answers_;
  std::string black_hole_suffix_;
  std::map<std::string, int> seen_;
  int queries_ = 0;
};

}  // namespace fanout::testing
