// Free TCP ports on 127.0.0.1 for a benchmark's transports: each is bound to port 0 to
// learn one the kernel gives, then released (a small race, as for any such helper).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace kv::testing {

inline Result<std::vector<uint16_t>> free_ports(uint32_t n) {
    std::vector<uint16_t> ports;
    std::vector<int> fds;
    Status st;
    for (uint32_t i = 0; i < n && st; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            st = Error::from_errno("cannot find a free port");
        else
            ports.push_back(ntohs(a.sin_port));
        if (fd >= 0) fds.push_back(fd);
    }
    for (int fd : fds) ::close(fd);
    if (!st) return st.error();
    return ports;
}

}  // namespace kv::testing
