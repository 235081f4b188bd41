// The server-side request forgery guard (docs/webhook-contract.md §5).
//
// After DNS resolution and before connect(), every candidate address goes through
// AddressGuard::check(). Addresses that are not globally reachable unicast (loopback, RFC 1918,
// link-local, CGNAT, multicast, ...) are refused unless an operator allow-list entry opens an
// exception, and the caller then connects to exactly the sockaddr it checked: there is no second
// lookup between check and connect, so a DNS answer cannot change under the guard.
//
//   AddressGuard guard({*Subnet::parse("127.0.0.1/32")});
//   Verdict v = guard.check(ai->ai_addr);
//   if (!v.allowed) refuse(format_address(ai->ai_addr), to_string(v.address_class));
//
// How addresses are judged (all [decision], after the IANA special-purpose registries, RFC 6890):
//
// - IPv4: refused are 0/8 ("this network"; 0.0.0.0 itself is kUnspecified), 10/8, 172.16/12,
//   192.168/16, 100.64/10, 127/8, 169.254/16, 192.0.0/24, 192.0.2/24, 198.18/15, 198.51.100/24,
//   203.0.113/24, 224/4, 240/4 and 255.255.255.255. The whole of 192.0.0/24 is refused, its two
//   anycast addresses (192.0.0.9 PCP, 192.0.0.10 TURN) included: they are never webhook
//   receivers. Everything else is global, including the registry's globally reachable special
//   ranges (192.31.196/24 AS112, 192.52.193/24 AMT, 192.88.99/24 former 6to4 relays).
// - IPv6: only 2000::/3 (global unicast) can be global. Before that test come ::, ::1, the
//   IPv4-compatible ::/96, 100::/64 (discard-only), fc00::/7 (unique-local), fe80::/10,
//   fec0::/10 (site-local) and ff00::/8, so each gets its own class; anything else outside
//   2000::/3 is kNotGlobalUnicast (64:ff9b:1::/48 local-use NAT64 and 5f00::/16 SRv6 included).
//   Inside 2000::/3: 2001::/32 (Teredo) is kTeredo, 2001:2::/48 kBenchmarking, 2001:db8::/32 and
//   3fff::/20 (RFC 9637) kDocumentation, the rest of 2001::/23 kProtocolAssignment (the whole
//   block: its anycast and AMT/AS112/ORCHID exceptions are never webhook receivers either).
// - Embedded IPv4: IPv4-mapped ::ffff:0:0/96, the NAT64 well-known prefix 64:ff9b::/96 and 6to4
//   2002::/16 (IPv4 in bits 16..47) are judged by their IPv4 address, because that is the host
//   the packets end up at: ::ffff:127.0.0.1 is kLoopback, ::ffff:8.8.8.8 is kGlobal.
// - Teredo (2001::/32) is refused whatever it embeds: the client address is obfuscated, the
//   traffic goes through a relay fanout does not control to a NAT mapping it cannot judge, and
//   public Teredo service is decommissioned. Only an IPv6 allow-list entry covering the address
//   opens it.
// - IPv4-compatible addresses (::a.b.c.d, deprecated by RFC 4291) are refused as such, not judged
//   by their IPv4.
//
// Allow-list: an entry opens an exception when it contains the address as given, or, for the
// three embedded forms above, its embedded IPv4 — so 127.0.0.1/32 also opens ::ffff:127.0.0.1 and
// 64:ff9b::7f00:1. Entries match literally otherwise: ::ffff:127.0.0.1/128 does not open plain
// 127.0.0.1 (write IPv4 entries in IPv4 form). Ports and IPv6 scope ids are ignored. No entry
// opens kUnspecified (Linux connects 0.0.0.0 and :: to the local host), kMulticast or kBroadcast
// (never TCP peers) or kNotIp, so an over-wide entry such as 0.0.0.0/0 cannot turn them into
// destinations; Verdict::allow_listed still reports the match. An entry never refuses anything.
//
// Threading: every function here is pure; an AddressGuard is immutable after construction and
// check() may be called from any number of threads at once.
//
// sockaddr arguments: the pointer may be null (judged as not an IP address); otherwise it must
// point at a sockaddr_in when sa_family is AF_INET and at a sockaddr_in6 when it is AF_INET6
// (what getaddrinfo() returns). Nothing keeps the pointer after the call.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace fanout::transport {

// Why Subnet::parse() refused its input.
enum class SubnetError : std::uint8_t {
  kBadAddress,        // the part before '/' is not an IPv4 or IPv6 address (inet_pton)
  kBadPrefix,         // the part after '/' is empty or not a plain decimal number
  kPrefixOutOfRange,  // prefix longer than 32 (IPv4) or 128 (IPv6)
  kHostBitsSet,       // address has bits set beyond the prefix, e.g. "10.0.0.1/8"
};

// A short English phrase, e.g. "address has bits set beyond the prefix length".
[[nodiscard]] std::string_view to_string(SubnetError e) noexcept;

// An IPv4 or IPv6 network in CIDR form: the address bytes (network order, IPv4 in the first four
// bytes, the rest zero) and how many leading bits count.
struct Subnet {
  sa_family_t family = AF_UNSPEC;  // AF_INET or AF_INET6 once parsed
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t prefix_length = 0;  // 0..32 for AF_INET, 0..128 for AF_INET6

  // Parses "10.0.0.0/8", "fd00::/8", or a bare address meaning /32 or /128. The address goes
  // through inet_pton (IPv6 when it contains ':', else IPv4), so no spaces, zone ids ("%eth0")
  // or shortened IPv4 ("10/8"). The prefix is 1 to 3 decimal digits without sign or leading
  // zero. Host bits beyond the prefix are refused, not cleared: "10.0.0.1/8" is most likely an
  // operator typo for "10.0.0.1/32", and guessing either way would open the wrong range.
  [[nodiscard]] static tl::expected<Subnet, SubnetError> parse(std::string_view cidr);

  // True when `address` has this subnet's family and its first prefix_length bits match. No
  // embedded-IPv4 translation here (AddressGuard does that): an AF_INET subnet never contains
  // an AF_INET6 address. Port and scope id are ignored; null gives false.
  [[nodiscard]] bool contains(const sockaddr* address) const noexcept;

  friend bool operator==(const Subnet&, const Subnet&) = default;
};

// Canonical CIDR text, e.g. "10.0.0.0/8", "fd00::/8". Allocates.
[[nodiscard]] std::string to_string(const Subnet& subnet);

// Why an address is (or is not) a permitted destination. Every value but kGlobal is refused
// unless the allow-list opens it.
enum class AddressClass : std::uint8_t {
  kGlobal,              // globally reachable unicast: the only class allowed by default
  kUnspecified,         // 0.0.0.0, ::
  kThisNetwork,         // 0.0.0.0/8 other than 0.0.0.0
  kLoopback,            // 127.0.0.0/8, ::1
  kPrivate,             // RFC 1918: 10/8, 172.16/12, 192.168/16
  kSharedAddressSpace,  // 100.64.0.0/10 (carrier-grade NAT, RFC 6598)
  kLinkLocal,           // 169.254.0.0/16, fe80::/10
  kMulticast,           // 224.0.0.0/4, ff00::/8
  kReserved,            // 240.0.0.0/4 other than the broadcast address
  kBroadcast,           // 255.255.255.255
  kDocumentation,       // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  kBenchmarking,        // 198.18.0.0/15, 2001:2::/48
  kProtocolAssignment,  // 192.0.0.0/24, 2001::/23 (outside the ranges named above)
  kUniqueLocal,         // fc00::/7
  kSiteLocal,           // fec0::/10 (deprecated)
  kDiscardOnly,         // 100::/64
  kIpv4Compatible,      // ::/96 other than :: and ::1 (deprecated)
  kTeredo,              // 2001::/32
  kNotGlobalUnicast,    // any other IPv6 address outside 2000::/3
  kNotIp,               // null, or a family other than AF_INET and AF_INET6
};

// A short English phrase for error messages, e.g. "private (RFC 1918)".
[[nodiscard]] std::string_view to_string(AddressClass c) noexcept;

// The class of `address` per the rules at the top of this file. Embedded IPv4 forms return the
// class of the IPv4 address. Pure; never allocates.
[[nodiscard]] AddressClass classify(const sockaddr* address) noexcept;

// The IPv4 address embedded in an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 (2002::/16) IPv6
// address, with the port of `address`; empty for any other address, Teredo and IPv4-compatible
// included.
[[nodiscard]] std::optional<sockaddr_in> embedded_ipv4(const sockaddr* address) noexcept;

// What AddressGuard::check() decided.
struct Verdict {
  bool allowed = false;                               // connect to it, or not
  AddressClass address_class = AddressClass::kNotIp;  // classify(address)
  bool allow_listed = false;  // an allow-list entry contains the address or its embedded IPv4
  friend bool operator==(const Verdict&, const Verdict&) = default;
};

// Decides whether fanout may connect to an address: allowed when it is kGlobal, or when an
// allow-list entry matches it and its class is one an entry may open (see the top of the file).
class AddressGuard {
 public:
  // `allow` is copied; empty means no exceptions. Entries are scanned linearly per check, which
  // suits the handful an operator lists.
  explicit AddressGuard(std::vector<Subnet> allow = {});

  [[nodiscard]] Verdict check(const sockaddr* address) const noexcept;

  [[nodiscard]] const std::vector<Subnet>& allow_list() const noexcept { return allow_; }

 private:
  std::vector<Subnet> allow_;
};

// "127.0.0.1:443", "[::1]:443", "[fe80::1%2]:443" (numeric scope id when set), for log and error
// messages; "<null address>" or "<address family N>" for anything that is not IP. Allocates.
[[nodiscard]] std::string format_address(const sockaddr* address);

}  // namespace fanout::transport
