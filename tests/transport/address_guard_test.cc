#include "transport/address_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace fanout::transport {
namespace {

// A sockaddr built from text with inet_pton, the way getaddrinfo() would hand it over.
struct Address {
  sockaddr_storage storage{};
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

Address make_address(const std::string& text, std::uint16_t port = 443) {
  Address a;
  if (text.find(':') == std::string::npos) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET, text.c_str(), &in.sin_addr), 1) << text;
    std::memcpy(&a.storage, &in, sizeof in);
  } else {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), &in6.sin6_addr), 1) << text;
    std::memcpy(&a.storage, &in6, sizeof in6);
  }
  return a;
}

Subnet subnet(std::string_view cidr) {
  auto s = Subnet::parse(cidr);
  EXPECT_TRUE(s.has_value()) << cidr;
  return s.value_or(Subnet{});
}

using C = AddressClass;

struct Row {
  const char* address;
  AddressClass expected;
};

// Every refused range at its edges: first and last address inside, and the neighbour just
// outside each edge. A default guard allows exactly the kGlobal rows.
const Row kRows[] = {
    // 0.0.0.0/8 "this network", 0.0.0.0 unspecified
    {"0.0.0.0", C::kUnspecified},
    {"0.0.0.1", C::kThisNetwork},
    {"0.255.255.255", C::kThisNetwork},
    {"1.0.0.0", C::kGlobal},
    {"1.1.1.1", C::kGlobal},
    {"8.8.8.8", C::kGlobal},
    // 10.0.0.0/8
    {"9.255.255.255", C::kGlobal},
    {"10.0.0.0", C::kPrivate},
    {"10.255.255.255", C::kPrivate},
    {"11.0.0.0", C::kGlobal},
    // 100.64.0.0/10
    {"100.63.255.255", C::kGlobal},
    {"100.64.0.0", C::kSharedAddressSpace},
    {"100.127.255.255", C::kSharedAddressSpace},
    {"100.128.0.0", C::kGlobal},
    // 127.0.0.0/8
    {"126.255.255.255", C::kGlobal},
    {"127.0.0.0", C::kLoopback},
    {"127.0.0.1", C::kLoopback},
    {"127.255.255.255", C::kLoopback},
    {"128.0.0.0", C::kGlobal},
    // 169.254.0.0/16
    {"169.253.255.255", C::kGlobal},
    {"169.254.0.0", C::kLinkLocal},
    {"169.254.169.254", C::kLinkLocal},
    {"169.254.255.255", C::kLinkLocal},
    {"169.255.0.0", C::kGlobal},
    // 172.16.0.0/12
    {"172.15.255.255", C::kGlobal},
    {"172.16.0.0", C::kPrivate},
    {"172.31.255.255", C::kPrivate},
    {"172.32.0.0", C::kGlobal},
    // 192.0.0.0/24 and 192.0.2.0/24
    {"191.255.255.255", C::kGlobal},
    {"192.0.0.0", C::kProtocolAssignment},
    {"192.0.0.9", C::kProtocolAssignment},
    {"192.0.0.255", C::kProtocolAssignment},
    {"192.0.1.0", C::kGlobal},
    {"192.0.1.255", C::kGlobal},
    {"192.0.2.0", C::kDocumentation},
    {"192.0.2.255", C::kDocumentation},
    {"192.0.3.0", C::kGlobal},
    {"192.88.99.1", C::kGlobal},
    // 192.168.0.0/16
    {"192.167.255.255", C::kGlobal},
    {"192.168.0.0", C::kPrivate},
    {"192.168.255.255", C::kPrivate},
    {"192.169.0.0", C::kGlobal},
    // 198.18.0.0/15
    {"198.17.255.255", C::kGlobal},
    {"198.18.0.0", C::kBenchmarking},
    {"198.19.255.255", C::kBenchmarking},
    {"198.20.0.0", C::kGlobal},
    // 198.51.100.0/24
    {"198.51.99.255", C::kGlobal},
    {"198.51.100.0", C::kDocumentation},
    {"198.51.100.255", C::kDocumentation},
    {"198.51.101.0", C::kGlobal},
    // 203.0.113.0/24
    {"203.0.112.255", C::kGlobal},
    {"203.0.113.0", C::kDocumentation},
    {"203.0.113.255", C::kDocumentation},
    {"203.0.114.0", C::kGlobal},
    // 224.0.0.0/4, 240.0.0.0/4, 255.255.255.255
    {"223.255.255.255", C::kGlobal},
    {"224.0.0.0", C::kMulticast},
    {"239.255.255.255", C::kMulticast},
    {"240.0.0.0", C::kReserved},
    {"255.255.255.254", C::kReserved},
    {"255.255.255.255", C::kBroadcast},

    // IPv6: ::/128, ::1/128, ::/96
    {"::", C::kUnspecified},
    {"::1", C::kLoopback},
    {"::2", C::kIpv4Compatible},
    {"::ffff:ffff", C::kIpv4Compatible},
    {"::1:0:0", C::kNotGlobalUnicast},
    {"::fffe:ffff:ffff", C::kNotGlobalUnicast},
    {"::1:ffff:0:0", C::kNotGlobalUnicast},
    // 100::/64
    {"ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kNotGlobalUnicast},
    {"100::", C::kDiscardOnly},
    {"100::ffff:ffff:ffff:ffff", C::kDiscardOnly},
    {"100:0:0:1::", C::kNotGlobalUnicast},
    // 2000::/3 boundaries
    {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kNotGlobalUnicast},
    {"2000::", C::kGlobal},
    {"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kGlobal},
    {"4000::", C::kNotGlobalUnicast},
    {"5f00::1", C::kNotGlobalUnicast},
    // 2001::/23 with Teredo 2001::/32 and benchmarking 2001:2::/48 inside it
    {"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kGlobal},
    {"2001::", C::kTeredo},
    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", C::kTeredo},
    {"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", C::kTeredo},
    {"2001:1::", C::kProtocolAssignment},
    {"2001:1::1", C::kProtocolAssignment},
    {"2001:1:ffff:ffff:ffff:ffff:ffff:ffff", C::kProtocolAssignment},
    {"2001:2::", C::kBenchmarking},
    {"2001:2:0:ffff:ffff:ffff:ffff:ffff", C::kBenchmarking},
    {"2001:2:1::", C::kProtocolAssignment},
    {"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", C::kProtocolAssignment},
    {"2001:200::", C::kGlobal},
    // 2001:db8::/32
    {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", C::kGlobal},
    {"2001:db8::", C::kDocumentation},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", C::kDocumentation},
    {"2001:db9::", C::kGlobal},
    // 3fff::/20
    {"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kGlobal},
    {"3fff::", C::kDocumentation},
    {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", C::kDocumentation},
    {"3fff:1000::", C::kGlobal},
    {"2606:4700::1111", C::kGlobal},
    {"2a00:1450:4007:80e::200e", C::kGlobal},
    // fc00::/7, then fe00::/9 (neither ULA nor link-local), fe80::/10, fec0::/10, ff00::/8
    {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kNotGlobalUnicast},
    {"fc00::", C::kUniqueLocal},
    {"fd00::1", C::kUniqueLocal},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kUniqueLocal},
    {"fe00::", C::kNotGlobalUnicast},
    {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kNotGlobalUnicast},
    {"fe80::", C::kLinkLocal},
    {"fe80::1", C::kLinkLocal},
    {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kLinkLocal},
    {"fec0::", C::kSiteLocal},
    {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kSiteLocal},
    {"ff00::", C::kMulticast},
    {"ff02::1", C::kMulticast},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kMulticast},

    // IPv4-mapped ::ffff:0:0/96, judged by the IPv4 address
    {"::ffff:0.0.0.0", C::kUnspecified},
    {"::ffff:10.0.0.1", C::kPrivate},
    {"::ffff:127.0.0.1", C::kLoopback},
    {"::ffff:169.254.169.254", C::kLinkLocal},
    {"::ffff:192.168.1.1", C::kPrivate},
    {"::ffff:100.64.0.1", C::kSharedAddressSpace},
    {"::ffff:255.255.255.255", C::kBroadcast},
    {"::ffff:8.8.8.8", C::kGlobal},
    {"::fffe:808:808", C::kNotGlobalUnicast},
    // NAT64 well-known prefix 64:ff9b::/96
    {"64:ff9b::a00:1", C::kPrivate},
    {"64:ff9b::7f00:1", C::kLoopback},
    {"64:ff9b::808:808", C::kGlobal},
    {"64:ff9b::1:808:808", C::kNotGlobalUnicast},  // outside the /96: not NAT64
    {"64:ff9b:1::a00:1", C::kNotGlobalUnicast},    // local-use NAT64, RFC 8215
    // 6to4 2002::/16, IPv4 in bits 16..47
    {"2002:a00:1::", C::kPrivate},
    {"2002:7f00:1::1", C::kLoopback},
    {"2002:c0a8:101:1::1", C::kPrivate},
    {"2002:808:808::1", C::kGlobal},
    {"2002::", C::kUnspecified},
    {"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", C::kGlobal},
    {"2003::", C::kGlobal},
    // IPv4-compatible ::a.b.c.d is refused as such, even for a global IPv4
    {"::8.8.8.8", C::kIpv4Compatible},
    {"::127.0.0.1", C::kIpv4Compatible},
};

class AddressGuardTableTest : public testing::TestWithParam<Row> {};

TEST_P(AddressGuardTableTest, ClassifiesAndRefusesEveryNonGlobalRange) {
  const Row& row = GetParam();
  const Address a = make_address(row.address);
  EXPECT_EQ(classify(a.get()), row.expected)
      << row.address << " is " << to_string(classify(a.get())) << ", expected "
      << to_string(row.expected);
  const Verdict v = AddressGuard().check(a.get());
  EXPECT_EQ(v.address_class, row.expected) << row.address;
  EXPECT_EQ(v.allowed, row.expected == C::kGlobal) << row.address;
  EXPECT_FALSE(v.allow_listed) << row.address;
}

std::string row_name(const testing::TestParamInfo<Row>& info) {
  std::string name = "Row" + std::to_string(info.index) + "_";
  for (const char* p = info.param.address; *p != '\0'; ++p) {
    const char c = *p;
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    name += alnum ? c : 'x';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(EdgeAddresses, AddressGuardTableTest, testing::ValuesIn(kRows), row_name);

TEST(AddressGuardTest, RefusesNonIpFamilies) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  const auto* sa = reinterpret_cast<const sockaddr*>(&un);
  EXPECT_EQ(classify(sa), C::kNotIp);
  EXPECT_EQ(AddressGuard().check(sa), (Verdict{false, C::kNotIp, false}));
  // Even an allow-list that opens everything does not open a non-IP family.
  const AddressGuard open_all({subnet("0.0.0.0/0"), subnet("::/0")});
  EXPECT_EQ(open_all.check(sa), (Verdict{false, C::kNotIp, false}));

  sockaddr_storage unspec{};
  unspec.ss_family = AF_UNSPEC;
  EXPECT_FALSE(open_all.check(reinterpret_cast<const sockaddr*>(&unspec)).allowed);
}

TEST(AddressGuardTest, RefusesNullAddress) {
  EXPECT_EQ(classify(nullptr), C::kNotIp);
  EXPECT_EQ(AddressGuard({subnet("0.0.0.0/0")}).check(nullptr), (Verdict{false, C::kNotIp, false}));
  EXPECT_FALSE(subnet("0.0.0.0/0").contains(nullptr));
  EXPECT_EQ(format_address(nullptr), "<null address>");
}

TEST(AddressGuardTest, IgnoresPorts) {
  for (const std::uint16_t port : std::initializer_list<std::uint16_t>{0, 1, 80, 443, 65535}) {
    EXPECT_TRUE(AddressGuard().check(make_address("8.8.8.8", port).get()).allowed);
    EXPECT_FALSE(AddressGuard().check(make_address("127.0.0.1", port).get()).allowed);
    EXPECT_TRUE(AddressGuard({subnet("127.0.0.1/32")})
                    .check(make_address("127.0.0.1", port).get())
                    .allowed);
  }
}

TEST(AddressGuardTest, AllowListOpensExactlyItsSubnet) {
  const AddressGuard guard({subnet("127.0.0.1/32")});
  EXPECT_EQ(guard.check(make_address("127.0.0.1").get()), (Verdict{true, C::kLoopback, true}));
  EXPECT_EQ(guard.check(make_address("127.0.0.2").get()), (Verdict{false, C::kLoopback, false}));
  EXPECT_EQ(guard.check(make_address("::1").get()), (Verdict{false, C::kLoopback, false}));
}

TEST(AddressGuardTest, AllowListOpensWholePrivateRange) {
  const AddressGuard guard({subnet("10.0.0.0/8")});
  EXPECT_EQ(guard.check(make_address("10.1.2.3").get()), (Verdict{true, C::kPrivate, true}));
  EXPECT_TRUE(guard.check(make_address("10.255.255.255").get()).allowed);
  EXPECT_FALSE(guard.check(make_address("172.16.0.1").get()).allowed);
  EXPECT_FALSE(guard.check(make_address("192.168.0.1").get()).allowed);
}

TEST(AddressGuardTest, AllowListOpensIpv6Loopback) {
  const AddressGuard guard({subnet("::1/128")});
  EXPECT_EQ(guard.check(make_address("::1").get()), (Verdict{true, C::kLoopback, true}));
  EXPECT_FALSE(guard.check(make_address("127.0.0.1").get()).allowed);
  EXPECT_FALSE(guard.check(make_address("::2").get()).allowed);
}

TEST(AddressGuardTest, AllowListedIpv4OpensItsEmbeddedForms) {
  const AddressGuard guard({subnet("127.0.0.1/32")});
  EXPECT_EQ(guard.check(make_address("::ffff:127.0.0.1").get()),
            (Verdict{true, C::kLoopback, true}));
  EXPECT_EQ(guard.check(make_address("64:ff9b::7f00:1").get()),
            (Verdict{true, C::kLoopback, true}));
  EXPECT_EQ(guard.check(make_address("2002:7f00:1::").get()), (Verdict{true, C::kLoopback, true}));
  EXPECT_FALSE(guard.check(make_address("::ffff:127.0.0.2").get()).allowed);
  // IPv4-compatible is not an embedded form the guard translates.
  EXPECT_EQ(guard.check(make_address("::127.0.0.1").get()),
            (Verdict{false, C::kIpv4Compatible, false}));
}

TEST(AddressGuardTest, AllowListMatchesMappedEntriesOnlyLiterally) {
  const AddressGuard guard({subnet("::ffff:127.0.0.1/128")});
  EXPECT_TRUE(guard.check(make_address("::ffff:127.0.0.1").get()).allowed);
  EXPECT_FALSE(guard.check(make_address("127.0.0.1").get()).allowed);
}

TEST(AddressGuardTest, AllowListNeverRefusesGlobalAddress) {
  const AddressGuard guard({subnet("8.8.8.0/24"), subnet("10.0.0.0/8")});
  EXPECT_EQ(guard.check(make_address("8.8.8.8").get()), (Verdict{true, C::kGlobal, true}));
  EXPECT_EQ(guard.check(make_address("1.1.1.1").get()), (Verdict{true, C::kGlobal, false}));
  EXPECT_EQ(guard.check(make_address("2606:4700::1111").get()), (Verdict{true, C::kGlobal, false}));
}

TEST(AddressGuardTest, AllowListCannotOpenUnspecifiedMulticastOrBroadcast) {
  const AddressGuard guard({subnet("0.0.0.0/0"), subnet("::/0")});
  EXPECT_EQ(guard.check(make_address("0.0.0.0").get()), (Verdict{false, C::kUnspecified, true}));
  EXPECT_EQ(guard.check(make_address("::").get()), (Verdict{false, C::kUnspecified, true}));
  EXPECT_EQ(guard.check(make_address("::ffff:0.0.0.0").get()),
            (Verdict{false, C::kUnspecified, true}));
  EXPECT_EQ(guard.check(make_address("224.0.0.1").get()), (Verdict{false, C::kMulticast, true}));
  EXPECT_EQ(guard.check(make_address("ff02::1").get()), (Verdict{false, C::kMulticast, true}));
  EXPECT_EQ(guard.check(make_address("255.255.255.255").get()),
            (Verdict{false, C::kBroadcast, true}));
  // Everything else the wide entries cover is opened.
  EXPECT_TRUE(guard.check(make_address("0.0.0.1").get()).allowed);
  EXPECT_TRUE(guard.check(make_address("240.0.0.1").get()).allowed);
  EXPECT_TRUE(guard.check(make_address("fd00::1").get()).allowed);
  EXPECT_TRUE(guard.check(make_address("2001::1").get()).allowed);
}

TEST(AddressGuardTest, TeredoOpensOnlyThroughIpv6Entry) {
  // 2001:0:4136:e378:8000:63bf:3fff:fdd2: client 192.0.2.45 (obfuscated as 3fff:fdd2).
  const Address teredo = make_address("2001:0:4136:e378:8000:63bf:3fff:fdd2");
  EXPECT_FALSE(embedded_ipv4(teredo.get()).has_value());
  EXPECT_FALSE(AddressGuard({subnet("192.0.2.45/32"), subnet("65.54.227.120/32")})
                   .check(teredo.get())
                   .allowed);
  EXPECT_EQ(AddressGuard({subnet("2001::/32")}).check(teredo.get()),
            (Verdict{true, C::kTeredo, true}));
}

TEST(AddressGuardTest, ExtractsEmbeddedIpv4WithPort) {
  for (const char* text : {"::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1:5::9"}) {
    const auto v4 = embedded_ipv4(make_address(text, 8443).get());
    ASSERT_TRUE(v4.has_value()) << text;
    EXPECT_EQ(v4->sin_family, AF_INET);
    EXPECT_EQ(ntohs(v4->sin_port), 8443);
    EXPECT_EQ(format_address(reinterpret_cast<const sockaddr*>(&*v4)), "10.0.0.1:8443") << text;
  }
  for (const char* text : {"10.0.0.1", "::10.0.0.1", "fd00::a00:1", "2001::a00:1"}) {
    EXPECT_FALSE(embedded_ipv4(make_address(text).get()).has_value()) << text;
  }
  EXPECT_FALSE(embedded_ipv4(nullptr).has_value());
}

TEST(AddressGuardTest, FormatsAddressesForMessages) {
  EXPECT_EQ(format_address(make_address("127.0.0.1", 443).get()), "127.0.0.1:443");
  EXPECT_EQ(format_address(make_address("::1", 443).get()), "[::1]:443");
  EXPECT_EQ(format_address(make_address("::ffff:10.0.0.1", 80).get()), "[::ffff:10.0.0.1]:80");
  EXPECT_EQ(format_address(make_address("2606:4700::1111", 65535).get()),
            "[2606:4700::1111]:65535");

  Address scoped = make_address("fe80::1", 8080);
  sockaddr_in6 in6{};
  std::memcpy(&in6, &scoped.storage, sizeof in6);
  in6.sin6_scope_id = 2;
  std::memcpy(&scoped.storage, &in6, sizeof in6);
  EXPECT_EQ(format_address(scoped.get()), "[fe80::1%2]:8080");

  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_EQ(format_address(reinterpret_cast<const sockaddr*>(&un)),
            "<address family " + std::to_string(AF_UNIX) + ">");
}

TEST(AddressGuardTest, NamesEveryAddressClassDistinctly) {
  std::set<std::string_view> phrases;
  for (int i = 0; i <= static_cast<int>(C::kNotIp); ++i) {
    const std::string_view phrase = to_string(static_cast<C>(i));
    EXPECT_FALSE(phrase.empty());
    EXPECT_NE(phrase, "unknown address class") << i;
    phrases.insert(phrase);
  }
  EXPECT_EQ(phrases.size(), static_cast<std::size_t>(C::kNotIp) + 1);
}

// --- Subnet --------------------------------------------------------------------------------------

TEST(SubnetTest, ParsesIpv4Cidr) {
  const auto s = Subnet::parse("10.0.0.0/8");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->family, AF_INET);
  EXPECT_EQ(s->prefix_length, 8);
  EXPECT_EQ(s->bytes[0], 10);
  EXPECT_EQ(to_string(*s), "10.0.0.0/8");
}

TEST(SubnetTest, ParsesIpv6Cidr) {
  const auto s = Subnet::parse("fd00::/8");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->family, AF_INET6);
  EXPECT_EQ(s->prefix_length, 8);
  EXPECT_EQ(s->bytes[0], 0xfd);
  EXPECT_EQ(to_string(*s), "fd00::/8");
}

TEST(SubnetTest, AcceptsValidForms) {
  struct Good {
    const char* input;
    const char* canonical;
  };
  const Good goods[] = {
      {"127.0.0.1/32", "127.0.0.1/32"},
      {"127.0.0.1", "127.0.0.1/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"100.64.0.0/10", "100.64.0.0/10"},
      {"172.16.0.0/12", "172.16.0.0/12"},
      {"::1/128", "::1/128"},
      {"::1", "::1/128"},
      {"::/0", "::/0"},
      {"FE80::/10", "fe80::/10"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"::ffff:127.0.0.1/128", "::ffff:127.0.0.1/128"},
      {"::ffff:0.0.0.0/96", "::ffff:0.0.0.0/96"},
      {"2001:0db8:0000:0000:0000:0000:0000:0001/128", "2001:db8::1/128"},
  };
  for (const Good& g : goods) {
    const auto s = Subnet::parse(g.input);
    ASSERT_TRUE(s.has_value()) << g.input << ": " << to_string(s.error());
    EXPECT_EQ(to_string(*s), g.canonical) << g.input;
  }
}

TEST(SubnetTest, RefusesBadInputWithExactError) {
  struct Bad {
    std::string_view input;
    SubnetError error;
  };
  using E = SubnetError;
  const Bad bads[] = {
      {"", E::kBadAddress},
      {"/8", E::kBadAddress},
      {"10.0.0", E::kBadAddress},
      {"10/8", E::kBadAddress},
      {"10.0.0.256/32", E::kBadAddress},
      {"010.0.0.0/8", E::kBadAddress},
      {" 10.0.0.0/8", E::kBadAddress},
      {"10.0.0.0 /8", E::kBadAddress},
      {"localhost/32", E::kBadAddress},
      {"fe80::1%eth0/128", E::kBadAddress},
      {"[::1]/128", E::kBadAddress},
      {"::1::2/128", E::kBadAddress},
      {"gggg::/16", E::kBadAddress},
      {std::string_view("10.0.0.0\0/8", 11), E::kBadAddress},
      {"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd/1", E::kBadAddress},
      {"10.0.0.0/", E::kBadPrefix},
      {"10.0.0.0/x", E::kBadPrefix},
      {"10.0.0.0/+8", E::kBadPrefix},
      {"10.0.0.0/-8", E::kBadPrefix},
      {"10.0.0.0/08", E::kBadPrefix},
      {"10.0.0.0/8 ", E::kBadPrefix},
      {"10.0.0.0/ 8", E::kBadPrefix},
      {"10.0.0.0/8/8", E::kBadPrefix},
      {"10.0.0.0/0x8", E::kBadPrefix},
      {"::/", E::kBadPrefix},
      {"10.0.0.0/33", E::kPrefixOutOfRange},
      {"10.0.0.0/128", E::kPrefixOutOfRange},
      {"10.0.0.0/4294967304", E::kPrefixOutOfRange},
      {"::/129", E::kPrefixOutOfRange},
      {"::/1000", E::kPrefixOutOfRange},
      {"10.0.0.1/8", E::kHostBitsSet},
      {"11.0.0.0/7", E::kHostBitsSet},
      {"127.0.0.1/31", E::kHostBitsSet},
      {"100.64.0.0/9", E::kHostBitsSet},
      {"0.0.0.1/0", E::kHostBitsSet},
      {"fd00::1/8", E::kHostBitsSet},
      {"fe80::/8", E::kHostBitsSet},
      {"::1/127", E::kHostBitsSet},
  };
  for (const Bad& b : bads) {
    const auto s = Subnet::parse(b.input);
    ASSERT_FALSE(s.has_value()) << b.input << " parsed as " << to_string(*s);
    EXPECT_EQ(s.error(), b.error) << b.input << ": " << to_string(s.error());
  }
}

TEST(SubnetTest, ErrorsHaveDistinctPhrases) {
  EXPECT_EQ(to_string(SubnetError::kBadAddress), "address is not a valid IPv4 or IPv6 address");
  EXPECT_EQ(to_string(SubnetError::kBadPrefix), "prefix length is not a decimal number");
  EXPECT_EQ(to_string(SubnetError::kPrefixOutOfRange),
            "prefix length exceeds 32 for IPv4 or 128 for IPv6");
  EXPECT_EQ(to_string(SubnetError::kHostBitsSet), "address has bits set beyond the prefix length");
}

TEST(SubnetTest, ContainsChecksPrefixBitsAtEdges) {
  const Subnet s = subnet("100.64.0.0/10");
  EXPECT_FALSE(s.contains(make_address("100.63.255.255").get()));
  EXPECT_TRUE(s.contains(make_address("100.64.0.0").get()));
  EXPECT_TRUE(s.contains(make_address("100.127.255.255").get()));
  EXPECT_FALSE(s.contains(make_address("100.128.0.0").get()));

  const Subnet v6 = subnet("fe80::/10");
  EXPECT_FALSE(v6.contains(make_address("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff").get()));
  EXPECT_TRUE(v6.contains(make_address("fe80::").get()));
  EXPECT_TRUE(v6.contains(make_address("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff").get()));
  EXPECT_FALSE(v6.contains(make_address("fec0::").get()));

  EXPECT_TRUE(subnet("0.0.0.0/0").contains(make_address("255.255.255.255").get()));
  EXPECT_TRUE(subnet("::/0").contains(make_address("ffff::").get()));
}

TEST(SubnetTest, ContainsNeverCrossesFamilies) {
  EXPECT_FALSE(subnet("127.0.0.1/32").contains(make_address("::ffff:127.0.0.1").get()));
  EXPECT_FALSE(subnet("::ffff:127.0.0.1/128").contains(make_address("127.0.0.1").get()));
  EXPECT_FALSE(subnet("::/0").contains(make_address("1.2.3.4").get()));
  EXPECT_FALSE(subnet("0.0.0.0/0").contains(make_address("::1").get()));
}

}  // namespace
}  // namespace fanout::transport
