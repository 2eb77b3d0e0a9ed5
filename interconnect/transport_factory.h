// Choosing a Transport implementation by name ("tcp"; "rdma" later). The table of
// implementations is explicit (transport_factory.cc), not filled by static initialisers.
#pragma once

#include <memory>
#include <string_view>

#include "interconnect/transport.h"
#include "interconnect/transport_options.h"

namespace kv {

// Builds and starts the named transport; "unknown transport 'x' (known: tcp)" otherwise.
// `handler` must outlive the transport (or its shutdown()).
Result<std::unique_ptr<Transport>> make_transport(std::string_view name,
                                                  const TransportOptions& opts,
                                                  MessageHandler* handler);

}  // namespace kv
