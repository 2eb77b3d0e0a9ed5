// --peers HOST:PORT[,HOST:PORT...] of the test node programs (kv-dsm-node,
// kv-dsm-kvm-node): the k-th item is node k. An item without a host or with a port that is
// not 1..65535 is an error naming it.
#pragma once

#include <charconv>
#include <string>
#include <vector>

#include "base/result.h"
#include "interconnect/transport.h"

namespace kv::test {

inline Result<std::vector<PeerAddress>> parse_peers(const std::string& s) {
    std::vector<PeerAddress> out;
    size_t pos = 0;
    for (;;) {
        const size_t comma = s.find(',', pos);
        const std::string item =
            s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const size_t colon = item.rfind(':');
        unsigned port = 0;
        const char* end = item.data() + item.size();
        if (colon == std::string::npos || colon == 0 ||
            std::from_chars(item.data() + colon + 1, end, port) !=
                std::from_chars_result{end, std::errc{}} ||
            port == 0 || port > 65535)
            return Error{"bad --peers item '" + item + "' (want HOST:PORT)"};
        out.push_back(PeerAddress{NodeId(out.size()), item.substr(0, colon), uint16_t(port)});
        if (comma == std::string::npos) return out;
        pos = comma + 1;
    }
}

}  // namespace kv::test
