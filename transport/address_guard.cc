#include "transport/address_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <utility>

namespace fanout::transport {
namespace {

using Bytes = std::array<std::uint8_t, 16>;

// An address copied out of its sockaddr, so the rest of the file works on plain bytes and never
// reads past the structure the family promises.
struct Ip {
  sa_family_t family = AF_UNSPEC;
  Bytes bytes{};  // IPv4 in the first four bytes
};

std::optional<Ip> read_ip(const sockaddr* address) noexcept {
  if (address == nullptr) return std::nullopt;
  Ip ip;
  ip.family = address->sa_family;
  if (ip.family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    std::memcpy(ip.bytes.data(), &in->sin_addr, 4);
  } else if (ip.family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    std::memcpy(ip.bytes.data(), &in6->sin6_addr, 16);
  } else {
    return std::nullopt;
  }
  return ip;
}

bool prefix_matches(const Bytes& a, const Bytes& b, unsigned bits) noexcept {
  const unsigned whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), whole) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - rest));
  return ((a[whole] ^ b[whole]) & mask) == 0;
}

// Ranges are tried in order, so a more specific range must come before the one that holds it.
struct Range {
  Bytes network;
  unsigned prefix_length;
  AddressClass address_class;
};

constexpr Range kIpv4Ranges[] = {
    {{0, 0, 0, 0}, 32, AddressClass::kUnspecified},
    {{0, 0, 0, 0}, 8, AddressClass::kThisNetwork},
    {{10, 0, 0, 0}, 8, AddressClass::kPrivate},
    {{100, 64, 0, 0}, 10, AddressClass::kSharedAddressSpace},
    {{127, 0, 0, 0}, 8, AddressClass::kLoopback},
    {{169, 254, 0, 0}, 16, AddressClass::kLinkLocal},
    {{172, 16, 0, 0}, 12, AddressClass::kPrivate},
    {{192, 0, 0, 0}, 24, AddressClass::kProtocolAssignment},
    {{192, 0, 2, 0}, 24, AddressClass::kDocumentation},
    {{192, 168, 0, 0}, 16, AddressClass::kPrivate},
    {{198, 18, 0, 0}, 15, AddressClass::kBenchmarking},
    {{198, 51, 100, 0}, 24, AddressClass::kDocumentation},
    {{203, 0, 113, 0}, 24, AddressClass::kDocumentation},
    {{224, 0, 0, 0}, 4, AddressClass::kMulticast},
    {{255, 255, 255, 255}, 32, AddressClass::kBroadcast},
    {{240, 0, 0, 0}, 4, AddressClass::kReserved},
};

// The IPv6 ranges with a fixed class. The embedded-IPv4 prefixes are handled in code before this
// table, as their class is the class of the IPv4 address they carry; none of them overlaps a row.
constexpr Range kIpv6Ranges[] = {
    {{}, 128, AddressClass::kUnspecified},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, AddressClass::kLoopback},
    {{}, 96, AddressClass::kIpv4Compatible},
    {{0x01, 0x00}, 64, AddressClass::kDiscardOnly},
    {{0xfc}, 7, AddressClass::kUniqueLocal},
    {{0xfe, 0x80}, 10, AddressClass::kLinkLocal},
    {{0xfe, 0xc0}, 10, AddressClass::kSiteLocal},
    {{0xff}, 8, AddressClass::kMulticast},
    {{0x20, 0x01, 0x00, 0x00}, 32, AddressClass::kTeredo},
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, AddressClass::kBenchmarking},
    {{0x20, 0x01, 0x00, 0x00}, 23, AddressClass::kProtocolAssignment},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, AddressClass::kDocumentation},
    {{0x3f, 0xff}, 20, AddressClass::kDocumentation},
};

constexpr Bytes kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};  // ::ffff:0:0/96
constexpr Bytes kNat64Prefix = {0x00, 0x64, 0xff, 0x9b};                     // 64:ff9b::/96
constexpr Bytes kSixToFourPrefix = {0x20, 0x02};                             // 2002::/16
constexpr Bytes kGlobalUnicast = {0x20};                                     // 2000::/3

const Range* find_range(const Range* first, const Range* last, const Bytes& bytes) noexcept {
  const Range* found = std::find_if(first, last, [&](const Range& r) {
    return prefix_matches(bytes, r.network, r.prefix_length);
  });
  return found == last ? nullptr : found;
}

// The IPv4 address (as an Ip) carried by a mapped, NAT64 or 6to4 address.
std::optional<Ip> embedded(const Ip& ip) noexcept {
  if (ip.family != AF_INET6) return std::nullopt;
  std::size_t offset = 0;
  if (prefix_matches(ip.bytes, kMappedPrefix, 96) || prefix_matches(ip.bytes, kNat64Prefix, 96)) {
    offset = 12;
  } else if (prefix_matches(ip.bytes, kSixToFourPrefix, 16)) {
    offset = 2;
  } else {
    return std::nullopt;
  }
  Ip v4;
  v4.family = AF_INET;
  std::copy_n(ip.bytes.begin() + static_cast<std::ptrdiff_t>(offset), 4, v4.bytes.begin());
  return v4;
}

AddressClass classify_ipv4(const Bytes& bytes) noexcept {
  const Range* r = find_range(std::begin(kIpv4Ranges), std::end(kIpv4Ranges), bytes);
  return r == nullptr ? AddressClass::kGlobal : r->address_class;
}

AddressClass classify_ip(const Ip& ip) noexcept {
  if (ip.family == AF_INET) return classify_ipv4(ip.bytes);
  if (const auto v4 = embedded(ip)) return classify_ipv4(v4->bytes);
  const Range* r = find_range(std::begin(kIpv6Ranges), std::end(kIpv6Ranges), ip.bytes);
  if (r != nullptr) return r->address_class;
  return prefix_matches(ip.bytes, kGlobalUnicast, 3) ? AddressClass::kGlobal
                                                     : AddressClass::kNotGlobalUnicast;
}

// Classes no allow-list entry may open: connecting to them is either meaningless for TCP or, for
// the unspecified address, silently reaches the local host.
bool openable(AddressClass c) noexcept {
  switch (c) {
    case AddressClass::kUnspecified:
    case AddressClass::kMulticast:
    case AddressClass::kBroadcast:
    case AddressClass::kNotIp:
      return false;
    default:
      return true;
  }
}

bool subnet_contains(const Subnet& s, const Ip& ip) noexcept {
  return s.family == ip.family && prefix_matches(ip.bytes, s.bytes, s.prefix_length);
}

// Read bytewise from network order: ntohs() may expand to casts that -Wold-style-cast rejects.
std::uint16_t port_of(const sockaddr* address) noexcept {
  std::uint8_t b[2];
  if (address->sa_family == AF_INET) {
    std::memcpy(b, &reinterpret_cast<const sockaddr_in*>(address)->sin_port, 2);
  } else {
    std::memcpy(b, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_port, 2);
  }
  return static_cast<std::uint16_t>((b[0] << 8) | b[1]);
}

}  // namespace

std::string_view to_string(SubnetError e) noexcept {
  switch (e) {
    case SubnetError::kBadAddress:
      return "address is not a valid IPv4 or IPv6 address";
    case SubnetError::kBadPrefix:
      return "prefix length is not a decimal number";
    case SubnetError::kPrefixOutOfRange:
      return "prefix length exceeds 32 for IPv4 or 128 for IPv6";
    case SubnetError::kHostBitsSet:
      return "address has bits set beyond the prefix length";
  }
  return "unknown subnet error";
}

tl::expected<Subnet, SubnetError> Subnet::parse(std::string_view cidr) {
  const std::size_t slash = cidr.find('/');
  const std::string_view address = cidr.substr(0, slash);
  // inet_pton needs a NUL-terminated copy; an embedded NUL would let it stop early and accept a
  // prefix of the text. 63 characters is well past the longest valid IPv6 text (45).
  char text[64];
  if (address.size() >= sizeof text || address.find('\0') != std::string_view::npos) {
    return tl::unexpected(SubnetError::kBadAddress);
  }
  std::memcpy(text, address.data(), address.size());
  text[address.size()] = '\0';

  Subnet s;
  s.family = address.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
  if (inet_pton(s.family, text, s.bytes.data()) != 1) {
    return tl::unexpected(SubnetError::kBadAddress);
  }
  const unsigned max_length = s.family == AF_INET ? 32 : 128;

  unsigned length = max_length;
  if (slash != std::string_view::npos) {
    const std::string_view digits = cidr.substr(slash + 1);
    const bool decimal = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    // A leading zero is refused like inet_pton refuses "010.0.0.1": it reads as octal to some.
    if (!decimal || (digits.size() > 1 && digits[0] == '0')) {
      return tl::unexpected(SubnetError::kBadPrefix);
    }
    if (digits.size() > 3) return tl::unexpected(SubnetError::kPrefixOutOfRange);
    length = 0;
    for (const char c : digits) length = length * 10 + static_cast<unsigned>(c - '0');
    if (length > max_length) return tl::unexpected(SubnetError::kPrefixOutOfRange);
  }
  s.prefix_length = static_cast<std::uint8_t>(length);

  Bytes network{};
  std::copy_n(s.bytes.begin(), length / 8, network.begin());
  if (length % 8 != 0) {
    network[length / 8] =
        static_cast<std::uint8_t>(s.bytes[length / 8] & (0xFFu << (8 - length % 8)));
  }
  if (network != s.bytes) return tl::unexpected(SubnetError::kHostBitsSet);
  return s;
}

bool Subnet::contains(const sockaddr* address) const noexcept {
  const auto ip = read_ip(address);
  return ip && subnet_contains(*this, *ip);
}

std::string to_string(const Subnet& subnet) {
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(subnet.family, subnet.bytes.data(), text, sizeof text) == nullptr) {
    return "<invalid subnet>";
  }
  return std::string(text) + "/" + std::to_string(subnet.prefix_length);
}

std::string_view to_string(AddressClass c) noexcept {
  switch (c) {
    case AddressClass::kGlobal:
      return "global unicast";
    case AddressClass::kUnspecified:
      return "unspecified address";
    case AddressClass::kThisNetwork:
      return "\"this network\" (0.0.0.0/8)";
    case AddressClass::kLoopback:
      return "loopback";
    case AddressClass::kPrivate:
      return "private (RFC 1918)";
    case AddressClass::kSharedAddressSpace:
      return "shared address space (carrier-grade NAT, 100.64.0.0/10)";
    case AddressClass::kLinkLocal:
      return "link-local";
    case AddressClass::kMulticast:
      return "multicast";
    case AddressClass::kReserved:
      return "reserved for future use (240.0.0.0/4)";
    case AddressClass::kBroadcast:
      return "limited broadcast (255.255.255.255)";
    case AddressClass::kDocumentation:
      return "documentation range";
    case AddressClass::kBenchmarking:
      return "benchmarking range";
    case AddressClass::kProtocolAssignment:
      return "IETF protocol assignment";
    case AddressClass::kUniqueLocal:
      return "unique-local (fc00::/7)";
    case AddressClass::kSiteLocal:
      return "site-local (fec0::/10, deprecated)";
    case AddressClass::kDiscardOnly:
      return "discard-only (100::/64)";
    case AddressClass::kIpv4Compatible:
      return "IPv4-compatible IPv6 (::/96, deprecated)";
    case AddressClass::kTeredo:
      return "Teredo tunnel (2001::/32)";
    case AddressClass::kNotGlobalUnicast:
      return "outside IPv6 global unicast (2000::/3)";
    case AddressClass::kNotIp:
      return "not an IPv4 or IPv6 address";
  }
  return "unknown address class";
}

AddressClass classify(const sockaddr* address) noexcept {
  const auto ip = read_ip(address);
  return ip ? classify_ip(*ip) : AddressClass::kNotIp;
}

std::optional<sockaddr_in> embedded_ipv4(const sockaddr* address) noexcept {
  const auto ip = read_ip(address);
  if (!ip) return std::nullopt;
  const auto v4 = embedded(*ip);
  if (!v4) return std::nullopt;
  sockaddr_in out{};
  out.sin_family = AF_INET;
  std::memcpy(&out.sin_port, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_port, 2);
  std::memcpy(&out.sin_addr, v4->bytes.data(), 4);
  return out;
}

AddressGuard::AddressGuard(std::vector<Subnet> allow) : allow_(std::move(allow)) {}

Verdict AddressGuard::check(const sockaddr* address) const noexcept {
  const auto ip = read_ip(address);
  if (!ip) return Verdict{};
  Verdict v;
  v.address_class = classify_ip(*ip);
  const auto v4 = embedded(*ip);
  v.allow_listed = std::any_of(allow_.begin(), allow_.end(), [&](const Subnet& s) {
    return subnet_contains(s, *ip) || (v4 && subnet_contains(s, *v4));
  });
  v.allowed =
      v.address_class == AddressClass::kGlobal || (v.allow_listed && openable(v.address_class));
  return v;
}

std::string format_address(const sockaddr* address) {
  if (address == nullptr) return "<null address>";
  char text[INET6_ADDRSTRLEN];
  const auto ip = read_ip(address);
  if (!ip) return "<address family " + std::to_string(address->sa_family) + ">";
  if (inet_ntop(ip->family, ip->bytes.data(), text, sizeof text) == nullptr) {
    return "<unprintable address>";
  }
  const std::string port = std::to_string(port_of(address));
  if (ip->family == AF_INET) return std::string(text) + ":" + port;
  std::string out = "[" + std::string(text);
  std::uint32_t scope = 0;
  std::memcpy(&scope, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_scope_id, sizeof scope);
  if (scope != 0) out += "%" + std::to_string(scope);
  return out + "]:" + port;
}

}  // namespace fanout::transport
