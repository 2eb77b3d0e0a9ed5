#include "interconnect/transport_factory.h"

#include <string>

#include "interconnect/tcp_transport.h"

namespace kv {
namespace {

using Factory = Result<std::unique_ptr<Transport>> (*)(const TransportOptions&, MessageHandler*);

struct Registered {
    std::string_view name;
    Factory make;
};

constexpr Registered kTransports[] = {
    {"tcp", &make_tcp_transport},
};

}  // namespace

Result<std::unique_ptr<Transport>> make_transport(std::string_view name,
                                                  const TransportOptions& opts,
                                                  MessageHandler* handler) {
    std::string known;
    for (const Registered& r : kTransports) {
        if (r.name == name) return r.make(opts, handler);
        known += (known.empty() ? "" : ", ") + std::string(r.name);
    }
    return Error{"unknown transport '" + std::string(name) + "' (known: " + known + ")"};
}

}  // namespace kv
