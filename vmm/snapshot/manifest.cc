// The manifest of a snapshot (snapshot.h): its JSON form and every check on reading it.
// Apart from the rest of the format so that the fuzz target needs only this and the JSON
// library.
#include <nlohmann/json.hpp>
#include <set>

#include "vmm/snapshot/snapshot.h"

namespace kv::snapshot {
namespace {

using Json = nlohmann::json;

bool is_hex_digest(const Json& j) {
    if (!j.is_string()) return false;
    const auto& s = j.get_ref<const std::string&>();
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace

bool valid_part_name(std::string_view name) {
    if (name.empty() || name.size() > 64 || name.front() == '.') return false;
    if (name == kManifestName) return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    return true;
}

const PartInfo* Manifest::part(const std::string& name) const {
    for (const auto& p : parts)
        if (p.name == name) return &p;
    return nullptr;
}

std::string Manifest::to_json() const {
    Json parts_json = Json::array();
    for (const auto& p : parts)
        parts_json.push_back({{"name", p.name}, {"bytes", p.bytes}, {"sha256", p.sha256}});
    Json j{{"magic", kMagic},
           {"format_version", format_version},
           {"config_digest", config_digest},
           {"nodes", nodes},
           {"vcpus", vcpus},
           {"memory_bytes", memory_bytes},
           {"created", created},
           {"parts", std::move(parts_json)}};
    if (parent) j["parent"] = *parent;
    if (parent_manifest_sha256) j["parent_manifest_sha256"] = *parent_manifest_sha256;
    return j.dump(2) + "\n";
}

Result<Manifest> Manifest::from_json(std::string_view text) {
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Error{"not JSON (a damaged manifest)"};
    auto m_it = j.find("magic");
    if (m_it == j.end() || *m_it != kMagic)
        return Error{"not a Kerrvisor snapshot (no \"magic\": \"" + std::string(kMagic) + "\")"};
    auto v = j.find("format_version");
    if (v == j.end() || !v->is_number_unsigned())
        return Error{"format_version: missing or not a number"};
    Manifest m;
    const uint64_t version = v->get<uint64_t>();
    if (version > kFormatVersion)
        return Error{"format version " + std::to_string(version) + " is newer than this build's " +
                     std::to_string(kFormatVersion) + " (made by a newer Kerrvisor)"};
    if (version < 1) return Error{"format version 0 is unknown"};
    m.format_version = uint32_t(version);
    static const std::set<std::string> known = {
        "magic",        "format_version", "config_digest", "nodes", "vcpus",
        "memory_bytes", "created",        "parent",        "parts", "parent_manifest_sha256"};
    for (const auto& [k, _] : j.items())
        if (!known.count(k)) return Error{"unknown field \"" + k + "\""};
    auto uint_field = [&](const char* key, uint64_t lo, uint64_t hi) -> Result<uint64_t> {
        auto it = j.find(key);
        if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() < lo ||
            it->get<uint64_t>() > hi)
            return Error{std::string(key) + ": missing or not a whole number from " +
                         std::to_string(lo) + " to " + std::to_string(hi)};
        return it->get<uint64_t>();
    };
    if (!is_hex_digest(j.value("config_digest", Json())))
        return Error{"config_digest: missing or not 64 hex digits"};
    m.config_digest = j["config_digest"].get<std::string>();
    auto nodes = uint_field("nodes", 1, 255);
    auto vcpus = uint_field("vcpus", 1, 255);
    auto memory = uint_field("memory_bytes", 4096, uint64_t(1) << 52);
    if (!nodes) return nodes.error();
    if (!vcpus) return vcpus.error();
    if (!memory) return memory.error();
    if (*memory % 4096) return Error{"memory_bytes: not a whole number of 4 KiB pages"};
    m.nodes = uint32_t(*nodes);
    m.vcpus = uint32_t(*vcpus);
    m.memory_bytes = *memory;
    if (auto c = j.find("created"); c == j.end() || !c->is_string())
        return Error{"created: missing or not a string"};
    m.created = j["created"].get<std::string>();
    if (auto p = j.find("parent"); p != j.end()) {
        if (!p->is_string() || p->get_ref<const std::string&>().empty())
            return Error{"parent: not a directory name"};
        m.parent = p->get<std::string>();
        if (!is_hex_digest(j.value("parent_manifest_sha256", Json())))
            return Error{
                "parent_manifest_sha256: missing or not 64 hex digits (an incremental "
                "snapshot names its parent's manifest)"};
        m.parent_manifest_sha256 = j["parent_manifest_sha256"].get<std::string>();
    } else if (j.contains("parent_manifest_sha256")) {
        return Error{"parent_manifest_sha256: given without a parent"};
    }
    auto parts = j.find("parts");
    if (parts == j.end() || !parts->is_array()) return Error{"parts: missing or not a list"};
    std::set<std::string> seen;
    for (size_t i = 0; i < parts->size(); ++i) {
        const Json& p = (*parts)[i];
        const std::string where = "parts[" + std::to_string(i) + "]";
        if (!p.is_object() || p.size() != 3 || !p.contains("name") || !p.contains("bytes") ||
            !p.contains("sha256"))
            return Error{where + ": not {name, bytes, sha256}"};
        if (!p["name"].is_string() || !valid_part_name(p["name"].get_ref<const std::string&>()))
            return Error{where + ": name is not a part name ([a-z0-9._-], not hidden)"};
        PartInfo info;
        info.name = p["name"].get<std::string>();
        if (!seen.insert(info.name).second) return Error{"part " + info.name + ": listed twice"};
        if (!p["bytes"].is_number_unsigned())
            return Error{"part " + info.name + ": bytes is not a whole number"};
        info.bytes = p["bytes"].get<uint64_t>();
        if (!is_hex_digest(p["sha256"]))
            return Error{"part " + info.name + ": sha256 is not 64 hex digits"};
        info.sha256 = p["sha256"].get<std::string>();
        m.parts.push_back(std::move(info));
    }
    return m;
}

}  // namespace kv::snapshot
