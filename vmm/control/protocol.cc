#include "vmm/control/protocol.h"

namespace kv::control {
namespace {

const char* type_name(ArgType t) {
    switch (t) {
        case ArgType::String:
            return "a string";
        case ArgType::Int:
            return "an integer";
        case ArgType::Uint:
            return "a non-negative integer";
        case ArgType::Bool:
            return "a boolean";
        case ArgType::Object:
            return "an object";
        case ArgType::Array:
            return "an array";
        case ArgType::Any:
            return "a value";
    }
    return "a value";
}

bool has_type(const Json& v, ArgType t) {
    switch (t) {
        case ArgType::String:
            return v.is_string();
        case ArgType::Int:
            return v.is_number_integer();
        case ArgType::Uint:
            return v.is_number_unsigned() || (v.is_number_integer() && v >= 0);
        case ArgType::Bool:
            return v.is_boolean();
        case ArgType::Object:
            return v.is_object();
        case ArgType::Array:
            return v.is_array();
        case ArgType::Any:
            return true;
    }
    return false;
}

}  // namespace

void CommandTable::add(std::string name, std::string help, std::vector<ArgSpec> args,
                       Handler handler) {
    commands_[std::move(name)] = Command{std::move(help), std::move(args), std::move(handler)};
}

const CommandTable::Command* CommandTable::find(const std::string& name) const {
    auto it = commands_.find(name);
    return it == commands_.end() ? nullptr : &it->second;
}

std::vector<std::string> CommandTable::names() const {
    std::vector<std::string> out;
    for (const auto& [n, c] : commands_) out.push_back(n);
    return out;
}

Reply CommandTable::call(const std::string& name, const Json& args) const {
    const Command* c = find(name);
    if (!c) return CommandError{"CommandNotFound", "The command " + name + " has not been found"};
    for (const auto& [key, value] : args.items()) {
        bool known = false;
        for (const auto& a : c->args) known = known || a.name == key;
        if (!known) return generic_error("Parameter '" + key + "' is unexpected");
    }
    for (const auto& a : c->args) {
        auto it = args.find(a.name);
        if (it == args.end()) {
            if (a.required) return generic_error("Parameter '" + a.name + "' is missing");
            continue;
        }
        if (!has_type(*it, a.type))
            return generic_error("Parameter '" + a.name + "' expects " + type_name(a.type));
    }
    return c->handler(args);
}

std::string Session::greeting() const {
    Json g = {{"QMP",
               {{"version",
                 {{"qemu", {{"major", 0}, {"minor", 1}, {"micro", 0}}}, {"package", "kerrvisor"}}},
                {"capabilities", Json::array()}}}};
    return g.dump();
}

std::string Session::reply(const Reply& r, const std::optional<Json>& id) const {
    Json out;
    if (const auto* e = std::get_if<CommandError>(&r))
        out = {{"error", {{"class", e->cls}, {"desc", e->desc}}}};
    else
        out = {{"return", std::get<Json>(r)}};
    if (id) out["id"] = *id;
    return out.dump();
}

std::string Session::overflow_reply(size_t length) const {
    return reply(generic_error("line of " + std::to_string(length) +
                               " bytes or more exceeds the maximum of " + std::to_string(kMaxLine)),
                 std::nullopt);
}

std::string Session::handle_line(std::string_view line) {
    Json req = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded()) return reply(generic_error("JSON parse error"), std::nullopt);
    if (!req.is_object()) return reply(generic_error("a request must be a JSON object"), {});
    std::optional<Json> id;
    if (auto it = req.find("id"); it != req.end()) id = *it;
    for (const auto& [key, value] : req.items())
        if (key != "execute" && key != "arguments" && key != "id")
            return reply(generic_error("request member '" + key + "' is unexpected"), id);
    auto ex = req.find("execute");
    if (ex == req.end()) return reply(generic_error("request has no member 'execute'"), id);
    if (!ex->is_string()) return reply(generic_error("'execute' must be a string"), id);
    Json args = Json::object();
    if (auto a = req.find("arguments"); a != req.end()) {
        if (!a->is_object()) return reply(generic_error("'arguments' must be an object"), id);
        args = *a;
    }
    const std::string cmd = *ex;
    if (cmd == "qmp_capabilities") {
        if (negotiated_)
            return reply(CommandError{"CommandNotFound",
                                      "Capabilities negotiation is already complete, command "
                                      "qmp_capabilities ignored"},
                         id);
        if (!args.empty()) return reply(generic_error("qmp_capabilities takes no arguments"), id);
        negotiated_ = true;
        return reply(Json::object(), id);
    }
    if (!negotiated_)
        return reply(CommandError{"CommandNotFound",
                                  "Expecting capabilities negotiation with 'qmp_capabilities'"},
                     id);
    if (cmd == "query-commands") {
        Json list = Json::array();
        list.push_back({{"name", "qmp_capabilities"}});
        list.push_back({{"name", "query-commands"}});
        list.push_back({{"name", "query-version"}});
        for (const auto& n : table_.names()) list.push_back({{"name", n}});
        return reply(list, id);
    }
    if (cmd == "query-version")
        return reply(
            Json{{"qemu", {{"major", 0}, {"minor", 1}, {"micro", 0}}}, {"package", "kerrvisor"}},
            id);
    return reply(table_.call(cmd, args), id);
}

std::string format_event(const std::string& name, const Json& data,
                         std::chrono::system_clock::time_point when) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(when.time_since_epoch());
    Json e = {{"event", name},
              {"timestamp",
               {{"seconds", us.count() / 1'000'000}, {"microseconds", us.count() % 1'000'000}}}};
    if (!data.is_null()) e["data"] = data;
    return e.dump();
}

std::vector<LineFramer::Item> LineFramer::feed(std::string_view bytes) {
    std::vector<Item> out;
    while (!bytes.empty()) {
        size_t nl = bytes.find('\n');
        std::string_view part = bytes.substr(0, nl);
        if (skipping_) {
            if (nl == std::string_view::npos) return out;
            skipping_ = false;
        } else if (buf_.size() + part.size() > max_) {
            out.push_back(Item{true, {}, buf_.size() + part.size()});
            buf_.clear();
            skipping_ = nl == std::string_view::npos;
        } else {
            buf_.append(part);
            if (nl == std::string_view::npos) return out;
            if (!buf_.empty() && buf_.back() == '\r') buf_.pop_back();
            out.push_back(Item{false, std::move(buf_), 0});
            buf_.clear();
        }
        bytes = nl == std::string_view::npos ? std::string_view{} : bytes.substr(nl + 1);
    }
    return out;
}

uint64_t uint_at(const Json& j, std::initializer_list<const char*> path) {
    const Json* p = &j;
    for (const char* k : path) {
        auto it = p->find(k);
        if (it == p->end()) return 0;
        p = &*it;
    }
    return p->is_number_unsigned() ? p->get<uint64_t>() : 0;
}

uint64_t report_faults(const Json& node_report) {
    return uint_at(node_report, {"memory", "faults", "read_missing"}) +
           uint_at(node_report, {"memory", "faults", "write_missing"}) +
           uint_at(node_report, {"memory", "faults", "write_protect"});
}

}  // namespace kv::control
