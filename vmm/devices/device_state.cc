#include "vmm/devices/device_state.h"

#include <algorithm>

namespace kv {

StateLoader::StateLoader(const StateJson& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) fail(where_ + ": expected an object");
}

const StateJson* StateLoader::field(const std::string& name) {
    if (!ok()) return nullptr;
    seen_.push_back(name);
    auto it = j_.find(name);
    if (it == j_.end()) {
        fail(where_ + "." + name + ": missing");
        return nullptr;
    }
    return &*it;
}

Status StateLoader::finish() const {
    if (!ok()) return Error{error_};
    for (auto it = j_.begin(); it != j_.end(); ++it)
        if (std::find(seen_.begin(), seen_.end(), it.key()) == seen_.end())
            return Error{where_ + "." + it.key() + ": unknown field"};
    return {};
}

}  // namespace kv
