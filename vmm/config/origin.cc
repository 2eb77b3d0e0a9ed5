#include "vmm/config/origin.h"

namespace kv::config {

std::string Origin::prefix() const {
    if (kind != Kind::File) return {};
    return file + ":" + std::to_string(line) + ": ";
}

std::string Origin::describe() const {
    switch (kind) {
        case Kind::Default:
            return "default";
        case Kind::CommandLine:
            return "command line";
        case Kind::File:
            return file + ":" + std::to_string(line);
    }
    return {};
}

}  // namespace kv::config
