// Helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "interconnect/codec.h"
#include "memory/coherence_engine.h"
#include "vmm/config/config.h"
#include "vmm/node/link_messages.h"
#include "vmm/node/node_control.h"

namespace kv::testing {

// Every message type a VMM node takes, with each layer's own rule (what its router checks
// received headers against): the node link's, the coherence engine's, the cluster
// control's.
inline std::span<const MessageSpec> vmm_node_messages() {
    static const std::vector<MessageSpec> all = [] {
        std::vector<MessageSpec> v;
        for (auto part : {link_messages(), coherence_messages(), control_messages()})
            v.insert(v.end(), part.begin(), part.end());
        return v;
    }();
    return all;
}

// A temporary file holding `bytes`, removed when the object goes away.
class TempFile {
  public:
    explicit TempFile(const std::vector<uint8_t>& bytes) {
        char tmpl[] = "/tmp/kv-test-XXXXXX";
        int fd = ::mkstemp(tmpl);
        path_ = tmpl;
        if (fd >= 0) {
            EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
            ::close(fd);
        }
    }
    ~TempFile() { ::unlink(path_.c_str()); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// vmm-launch's command-line parser on `args` (argv[0] added).
inline Result<config::ParseOutcome> parse_args(std::vector<std::string> args) {
    args.insert(args.begin(), "vmm-launch");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    return config::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

}  // namespace kv::testing
