// Where a configuration value came from, so that an error about it can say where to fix it.
#pragma once

#include <string>

namespace kv::config {

struct Origin {
    enum class Kind { Default, CommandLine, File };

    Kind kind = Kind::Default;
    std::string file;  // Kind::File: the config file's name as the user gave it
    int line = 0;      // Kind::File: 1-based line of the key

    static Origin command_line() { return Origin{Kind::CommandLine, {}, 0}; }
    static Origin in_file(std::string file, int line) {
        return Origin{Kind::File, std::move(file), line};
    }

    // "FILE:LINE: " for a value from a config file, "" otherwise: what goes in front of
    // "key: problem" in an error message.
    std::string prefix() const;
    // "default", "command line" or "FILE:LINE".
    std::string describe() const;
};

}  // namespace kv::config
