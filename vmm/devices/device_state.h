// A device's guest-visible state for snapshots (docs/snapshots.md), as one JSON object.
// A device lists its fields once, in a template visit_state(V& v) that both a StateSaver
// and a StateLoader walk:
//
//     template <class V> void visit_state(V& v) {
//         v("mode", mode_);            // bool, integers, enums, std::array, vector, deque
//         v.object("ch0", [&](auto& c) { c("count", ch_[0].count); });
//     }
//
// so what is saved and what is restored cannot drift apart. The loader checks every field
// (present, of its type, in its type's range, arrays of their length, no field it does
// not know) and keeps the first error, which names the field by its path
// ("devices.pit.ch0.count: 70000 is out of range for a 16-bit field"). A device that
// loaded without error still checks what only it knows (a mode out of range) and says
// so in its restore_state(). Restoring happens before any vCPU runs.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "base/result.h"
#include "vmm/control/protocol.h"

namespace kv {

using StateJson = control::Json;

class StateSaver {
  public:
    template <class T>
    void operator()(const std::string& name, const T& v) {
        j_[name] = to_json(v);
    }
    template <class F>
    void object(const std::string& name, F&& f) {
        StateSaver s;
        f(s);
        j_[name] = s.take();
    }
    StateJson take() { return std::move(j_); }

  private:
    template <class T>
    static StateJson to_json(const T& v) {
        if constexpr (std::is_enum_v<T>) {
            return StateJson(static_cast<std::underlying_type_t<T>>(v));
        } else if constexpr (std::is_same_v<T, bool> || std::is_integral_v<T>) {
            return StateJson(v);
        } else {
            StateJson a = StateJson::array();
            for (const auto& e : v) a.push_back(to_json(e));
            return a;
        }
    }
    StateJson j_ = StateJson::object();
};

class StateLoader {
  public:
    // `where` names the object in errors ("devices.pit").
    StateLoader(const StateJson& j, std::string where);
    StateLoader(StateJson&&, std::string) = delete;  // it keeps a reference to `j`

    template <class T>
    void operator()(const std::string& name, T& v) {
        const StateJson* f = field(name);
        if (f) from_json(*f, v, where_ + "." + name);
    }
    template <class F>
    void object(const std::string& name, F&& f) {
        const StateJson* o = field(name);
        if (!o) return;
        StateLoader sub(*o, where_ + "." + name);
        f(sub);
        if (auto st = sub.finish(); !st) fail(st.error().message);
    }
    // The first error, or one naming a field the object has and nothing asked for.
    Status finish() const;
    bool ok() const { return error_.empty(); }
    void fail(std::string message) {
        if (error_.empty()) error_ = std::move(message);
    }
    const std::string& where() const { return where_; }

    // Longest vector or deque a field may hold.
    static constexpr size_t kMaxElements = 1 << 16;

  private:
    const StateJson* field(const std::string& name);
    template <class T>
    void from_json(const StateJson& j, T& v, const std::string& path) {
        if constexpr (std::is_enum_v<T>) {
            std::underlying_type_t<T> u{};
            from_json(j, u, path);
            if (ok()) v = static_cast<T>(u);
        } else if constexpr (std::is_same_v<T, bool>) {
            if (!j.is_boolean()) return fail(path + ": expected true or false");
            v = j.get<bool>();
        } else if constexpr (std::is_integral_v<T>) {
            if (!j.is_number_integer()) return fail(path + ": expected an integer");
            // A non-negative value may have been stored as signed (json(int)).
            if (j.is_number_unsigned() || j.get<int64_t>() >= 0) {
                const uint64_t u = j.get<uint64_t>();
                if (u > uint64_t(std::numeric_limits<T>::max()))
                    return fail(path + ": " + std::to_string(u) + " is out of range for a " +
                                std::to_string(8 * sizeof(T)) + "-bit field");
                v = T(u);
            } else {
                const int64_t i = j.get<int64_t>();
                if (!std::is_signed_v<T> || i < int64_t(std::numeric_limits<T>::min()))
                    return fail(path + ": " + std::to_string(i) + " is out of range for a " +
                                std::string(std::is_signed_v<T> ? "" : "non-negative ") +
                                std::to_string(8 * sizeof(T)) + "-bit field");
                v = T(i);
            }
        } else {
            if (!j.is_array()) return fail(path + ": expected an array");
            if constexpr (requires { std::tuple_size<T>::value; }) {
                if (j.size() != v.size())
                    return fail(path + ": expected " + std::to_string(v.size()) +
                                " elements, found " + std::to_string(j.size()));
                for (size_t i = 0; i < v.size() && ok(); ++i)
                    from_json(j[i], v[i], path + "[" + std::to_string(i) + "]");
            } else {
                if (j.size() > kMaxElements)
                    return fail(path + ": " + std::to_string(j.size()) + " elements, at most " +
                                std::to_string(kMaxElements));
                v.clear();
                for (size_t i = 0; i < j.size() && ok(); ++i) {
                    typename T::value_type e{};
                    from_json(j[i], e, path + "[" + std::to_string(i) + "]");
                    v.push_back(e);
                }
            }
        }
    }

    const StateJson& j_;
    std::string where_;
    std::vector<std::string> seen_;
    std::string error_;
};

}  // namespace kv
