#include "vmm/devices/bus.h"

#include <cstring>

namespace kv {

Status Bus::insert(uint64_t base, uint64_t len, std::shared_ptr<Device> dev, std::string name,
                   uint64_t dev_offset) {
    if (len == 0) return Error{"bus: zero-length range for " + name};
    auto next = entries_.lower_bound(base);
    if (next != entries_.end() && next->first < base + len)
        return Error{"bus: " + name + " overlaps " + next->second.name};
    if (next != entries_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.len > base)
            return Error{"bus: " + name + " overlaps " + prev->second.name};
    }
    entries_.emplace(base, Entry{base, len, dev_offset, std::move(dev), std::move(name)});
    return {};
}

const Bus::Entry* Bus::find(uint64_t addr, uint64_t len) const {
    auto it = entries_.upper_bound(addr);
    if (it == entries_.begin()) return nullptr;
    --it;
    const Entry& e = it->second;
    if (addr - e.base + len > e.len) return nullptr;
    return &e;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
    const Entry* e = find(addr, data.size());
    if (!e) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    e->dev->read(addr - e->base + e->dev_offset, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
    const Entry* e = find(addr, data.size());
    if (!e) return false;
    e->dev->write(addr - e->base + e->dev_offset, data);
    return true;
}

}  // namespace kv
