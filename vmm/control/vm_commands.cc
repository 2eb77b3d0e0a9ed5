#include "vmm/control/vm_commands.h"

#include <algorithm>

#include "vmm/control/server.h"
#include "vmm/machine.h"

namespace kv::control {
namespace {

const char* reason_name(StopReason r) {
    switch (r) {
        case StopReason::PowerOff:
            return "guest-shutdown";
        case StopReason::Reset:
            return "guest-reset";
        case StopReason::Crashed:
            return "guest-panic";
        case StopReason::Failed:
            return "host-error";
        case StopReason::UserQuit:
            return "host-qmp-quit";
    }
    return "unknown";
}

// How long stop waits for every vCPU to reach an exit boundary.
constexpr std::chrono::milliseconds kPauseTimeout{10'000};
// How long a query waits for the other nodes' reports.
constexpr std::chrono::milliseconds kQueryTimeout{5'000};

// r[key] if it is there, else an empty array or object: no temporary to iterate over.
const Json& member(const Json& r, const char* key, bool object = false) {
    static const Json empty_array = Json::array(), empty_object = Json::object();
    auto it = r.find(key);
    if (it != r.end()) return *it;
    return object ? empty_object : empty_array;
}

// One node's row of query-nodes: who it is, its vCPUs, its slice of RAM, a few counters.
Json node_row(const Json& r) {
    Json row{{"node", r.value("node", 0u)},
             {"address", r.value("address", "")},
             {"state", r.value("state", "")}};
    if (r.contains("error")) {
        row["error"] = r["error"];
        return row;
    }
    Json ids = Json::array();
    uint64_t exits = 0;
    for (const auto& v : member(r, "vcpus")) {
        ids.push_back(v.value("vcpu", 0u));
        exits += uint_at(v, {"exits"});
    }
    row["vcpus"] = std::move(ids);
    row["memory_offset"] = uint_at(r, {"memory", "home_offset"});
    row["memory_bytes"] = uint_at(r, {"memory", "home_bytes"});
    row["exits"] = exits;
    row["faults"] = report_faults(r);
    row["pages_received"] = uint_at(r, {"memory", "transfers", "pages_received"});
    row["ipis_sent"] = uint_at(r, {"link", "ipis_sent"});
    row["io_forwarded"] = uint_at(r, {"link", "io_forwarded"});
    return row;
}

}  // namespace

void VmControl::attach(Machine* m) {
    std::lock_guard g(mu_);
    machine_ = m;
    if (m)
        m->set_event_sink(
            [this](const std::string& name, const Json& data) { emit(name.c_str(), data); });
}

void VmControl::detach() {
    std::lock_guard g(mu_);  // waits for a command that is using the machine
    if (machine_) machine_->set_event_sink(nullptr);
    machine_ = nullptr;
}

void VmControl::emit(const char* name, const Json& data) {
    if (server_) server_->emit(name, data);
}

template <class F>
Reply VmControl::with_machine(F f) {
    std::lock_guard g(mu_);
    if (!machine_) return generic_error("the guest is not running (it is starting or resetting)");
    return f(*machine_);
}

void VmControl::guest_stopped(const StopEvent& ev) {
    if (ev.reason == StopReason::Reset)
        emit("RESET", {{"guest", true}, {"reason", reason_name(ev.reason)}});
    else
        emit("SHUTDOWN",
             {{"guest", ev.reason == StopReason::PowerOff || ev.reason == StopReason::Crashed},
              {"reason", reason_name(ev.reason)},
              {"detail", ev.detail}});
}

void VmControl::add_commands(CommandTable& t) {
    t.add("query-status", "running or paused", {}, [this](const Json&) {
        return with_machine([](Machine& m) -> Reply {
            bool paused = m.paused();
            return Json{{"running", !paused},
                        {"singlestep", false},
                        {"status", paused ? "paused" : "running"}};
        });
    });
    t.add("query-vcpus", "every vCPU of the guest: node, state, exits, halts, time paused", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  Json list = Json::array();
                  for (const auto& r : m.cluster_reports(kQueryTimeout))
                      for (const auto& v : member(r, "vcpus")) {
                          Json row = v;
                          row["migrate"] = m.vcpu_migratable(v.value("vcpu", 0u));
                          list.push_back(std::move(row));
                      }
                  // By vCPU, wherever each runs.
                  std::sort(list.begin(), list.end(), [](const Json& a, const Json& b) {
                      return a.value("vcpu", 0u) < b.value("vcpu", 0u);
                  });
                  return list;
              });
          });
    t.add("query-nodes", "every node: address, state, vCPUs, memory range, counters", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  Json list = Json::array();
                  for (const auto& r : m.cluster_reports(kQueryTimeout))
                      list.push_back(node_row(r));
                  return list;
              });
          });
    t.add("query-memory",
          "guest memory by node: pages by local state, faults, transfers, most-faulted pages", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  Json list = Json::array();
                  for (const auto& r : m.cluster_reports(kQueryTimeout)) {
                      Json e{{"node", r.value("node", 0u)}};
                      if (r.contains("error")) {
                          e["state"] = r.value("state", "");
                          e["error"] = r["error"];
                      } else {
                          for (const auto& [k, v] : member(r, "memory", true).items()) e[k] = v;
                      }
                      list.push_back(std::move(e));
                  }
                  return list;
              });
          });
    t.add("query-stats", "every node's full report: vCPUs, memory, link counters", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  Json list = Json::array();
                  for (auto& r : m.cluster_reports(kQueryTimeout)) list.push_back(std::move(r));
                  return Json{{"nodes", std::move(list)}};
              });
          });
    t.add("stop", "pause every vCPU at an exit boundary; the guest's clocks stop too", {},
          [this](const Json&) {
              Reply r = with_machine([](Machine& m) -> Reply {
                  if (m.paused()) return Json::object();
                  if (auto st = m.pause(kPauseTimeout); !st)
                      return generic_error(st.error().message);
                  return Json::object();
              });
              if (std::holds_alternative<Json>(r)) emit("STOP");
              return r;
          });
    t.add("cont", "resume a paused guest where it stood", {}, [this](const Json&) {
        Reply r = with_machine([](Machine& m) -> Reply {
            if (auto st = m.resume(); !st) return generic_error(st.error().message);
            return Json::object();
        });
        if (std::holds_alternative<Json>(r)) emit("RESUME");
        return r;
    });
    t.add("system_powerdown", "press the ACPI power button", {}, [this](const Json&) {
        Reply r = with_machine([](Machine& m) -> Reply {
            m.press_power_button();
            return Json::object();
        });
        if (std::holds_alternative<Json>(r)) emit("POWERDOWN");
        return r;
    });
    t.add("system_reset", "reset the guest (on-reboot decides what follows)", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  m.request_stop(StopReason::Reset, "reset from the control socket");
                  return Json::object();
              });
          });
    t.add("memory-read",
          "SIZE (1..4096) bytes of guest physical memory at ADDRESS, as hex; up to 8 bytes also "
          "as a little-endian number (QEMU's xp)",
          {{"address", ArgType::Uint, true}, {"size", ArgType::Uint, false}},
          [this](const Json& a) {
              const uint64_t addr = a["address"].get<uint64_t>();
              const uint64_t size = a.contains("size") ? a["size"].get<uint64_t>() : 8;
              if (size == 0 || size > 4096)
                  return Reply(generic_error("Parameter 'size' wants 1 to 4096 bytes"));
              return with_machine([addr, size](Machine& m) -> Reply {
                  std::vector<uint8_t> buf(size);
                  if (auto st = m.read_guest_memory(addr, buf); !st)
                      return generic_error(st.error().message);
                  static const char* digits = "0123456789abcdef";
                  std::string hex;
                  for (uint8_t b : buf) {
                      hex.push_back(digits[b >> 4]);
                      hex.push_back(digits[b & 15]);
                  }
                  Json r{{"address", addr}, {"size", size}, {"hex", hex}};
                  if (size <= 8) {
                      uint64_t v = 0;
                      for (size_t i = size; i-- > 0;) v = v << 8 | buf[i];
                      r["value"] = v;
                  }
                  return r;
              });
          });
    t.add("migrate-vcpu",
          "move vCPU VCPU to node NODE while the guest runs: paused at an exit boundary, its "
          "state restored on NODE, every node's placement updated, then it runs there",
          {{"vcpu", ArgType::Uint, true}, {"node", ArgType::Uint, true}}, [this](const Json& a) {
              const uint64_t vcpu = a["vcpu"].get<uint64_t>(), node = a["node"].get<uint64_t>();
              return with_machine([vcpu, node](Machine& m) -> Reply {
                  if (vcpu >= m.num_vcpus())
                      return generic_error("Parameter 'vcpu': the guest has vCPUs 0 to " +
                                           std::to_string(m.num_vcpus() - 1));
                  if (node >= m.num_nodes())
                      return generic_error("Parameter 'node': the guest has nodes 0 to " +
                                           std::to_string(m.num_nodes() - 1));
                  auto r = m.migrate_vcpu(uint32_t(vcpu), uint32_t(node));
                  if (!r) return generic_error(r.error().message);
                  return Json{{"vcpu", r->vcpu},
                              {"from", r->from},
                              {"to", r->to},
                              {"moved", r->moved},
                              {"epoch", r->epoch},
                              {"pause_ns", r->pause_ns},
                              {"total_ns", r->total_ns},
                              {"save_ns", r->save_ns},
                              {"restore_ns", r->restore_ns},
                              {"state_bytes", r->state_bytes}};
              });
          });
    t.add("set-vcpu-capability",
          "whether vCPU VCPU may migrate (Kerrighed's CAN_MIGRATE; [vcpu.N] migrate in the "
          "config)",
          {{"vcpu", ArgType::Uint, true}, {"migrate", ArgType::Bool, true}}, [this](const Json& a) {
              const uint64_t vcpu = a["vcpu"].get<uint64_t>();
              const bool migrate = a["migrate"].get<bool>();
              return with_machine([vcpu, migrate](Machine& m) -> Reply {
                  if (vcpu >= m.num_vcpus())
                      return generic_error("Parameter 'vcpu': the guest has vCPUs 0 to " +
                                           std::to_string(m.num_vcpus() - 1));
                  if (auto st = m.set_vcpu_migratable(uint32_t(vcpu), migrate); !st)
                      return generic_error(st.error().message);
                  return Json{{"vcpu", vcpu}, {"migrate", migrate}};
              });
          });
    t.add("snapshot-save",
          "save the whole guest into directory DIR (atomically: a DIR holding a snapshot is "
          "replaced only once the new one is complete); the guest then runs on, or stays "
          "paused with stop=yes; with incremental-from=PARENT only the pages written since "
          "PARENT, the last snapshot saved or restored",
          {{"dir", ArgType::String, true},
           {"stop", ArgType::Bool, false},
           {"incremental-from", ArgType::String, false}},
          [this](const Json& a) {
              const std::string dir = a["dir"].get<std::string>();
              const bool stop = a.contains("stop") && a["stop"].get<bool>();
              std::optional<std::string> parent;
              if (a.contains("incremental-from")) parent = a["incremental-from"].get<std::string>();
              bool stopped = false;  // it ran before and stays paused now
              Reply r = with_machine([&](Machine& m) -> Reply {
                  const bool was_paused = m.paused();
                  auto s = m.save_snapshot(dir, stop, parent);
                  stopped = s && s->paused && !was_paused;
                  if (!s) return generic_error(s.error().message);
                  return Json{{"dir", s->dir},
                              {"bytes", s->bytes},
                              {"pages", s->pages},
                              {"zero_pages", s->zero_pages},
                              {"node_parts", s->node_parts},
                              {"pause_ns", s->pause_ns},
                              {"total_ns", s->total_ns},
                              {"status", s->paused ? "paused" : "running"}};
              });
              // The guest stopped: as after `stop`.
              if (stopped) emit("STOP");
              return r;
          });
    t.add("quit", "end vmm-launch (exit status 0)", {}, [this](const Json&) {
        return with_machine([](Machine& m) -> Reply {
            m.request_stop(StopReason::UserQuit, "quit from the control socket");
            return Json::object();
        });
    });
}

}  // namespace kv::control
