// The transport client options that go with an engine's options: one mapping, used by every
// worker's client and by fanoutd's tryout client (tools/fanoutd/cmd_serve.cc), so that a tryout
// is sent the way a delivery is. Header only: the engine's tools include it without a new
// library source.
#pragma once

#include <string>

#include "fanout/engine.h"
#include "fanout/version.h"
#include "transport/address_guard.h"
#include "transport/client/client.h"

namespace fanout::engine {

// EngineOptions → transport::ClientOptions: TLS (insecure, ca_file), protocols (http1_only),
// the address guard's exceptions (allow_subnets; a CIDR that does not parse is skipped:
// Engine::create refuses those), timeouts, pool limits, DNS, and the User-Agent
// "fanout/<version>".
inline transport::ClientOptions client_options(const EngineOptions& o) {
  transport::ClientOptions co;
  co.insecure = o.insecure;
  co.cleartext_h2 = !o.http1_only;
  co.offer_h2 = !o.http1_only;
  co.ca_file = o.ca_file;
  for (const std::string& cidr : o.allow_subnets) {
    if (auto s = transport::Subnet::parse(cidr)) co.allow.push_back(*s);
  }
  co.connect_timeout_ms = o.connect_timeout_ms;
  co.response_timeout_ms = o.response_timeout_ms;
  co.idle_timeout_ms = o.idle_timeout_ms;
  co.max_connections_per_origin = o.max_connections_per_origin;
  co.max_streams_per_connection = o.max_streams_per_connection;
  co.max_pending_per_origin = o.max_pending_per_origin;
  co.dns_servers = o.dns_servers;
  co.dns_timeout_ms = o.dns_timeout_ms;
  co.idle_origin_ms = o.idle_origin_ms;
  co.user_agent = "fanout/" + std::string(version());
  return co;
}

}  // namespace fanout::engine
