// Helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/config/config.h"

namespace kv::testing {

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
