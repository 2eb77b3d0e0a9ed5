// libFuzzer target: fuzzed config file text into vmm-launch's configuration parser
// (vmm/config/config.h: parse_command_line() with --config FILE, which runs the INI
// scanner, Boost.Program_options' config-file parser and every key's conversion), with one
// of a few command lines. A crash, sanitizer report, hang, exception or broken invariant
// (abort) fails the fuzz ctest (tests/fuzz/CMakeLists.txt).
//
// What must hold: the text is accepted or refused with one line of error (Boost's
// exceptions caught, none escaping); an accepted config has the ranges config.h promises (memory,
// vCPUs, time dilation, the nodes and their totals, the cluster key's size).
//
// The file is written to a private directory that also holds a "kernel" file and a
// "key" file (mode 0600, 32 bytes), so that a config naming them by relative path can be
// accepted. Input layout: byte 0 picks the command line (kArgs); the rest is the file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/log.h"
#include "vmm/config/config.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

// Where the config file and the files it may name live, made once.
struct Dir {
    std::string path, config;
    int fd = -1;  // the config file, rewritten for every input
    Dir() {
        char tmpl[] = "/tmp/kv-config-fuzz-XXXXXX";
        const char* base = std::getenv("TMPDIR");
        std::string t = std::string(base && *base ? base : "/tmp") + "/kv-config-fuzz-XXXXXX";
        std::vector<char> buf(t.begin(), t.end());
        buf.push_back(0);
        char* made = ::mkdtemp(buf.data());
        if (!made) made = ::mkdtemp(tmpl);
        check(made != nullptr);
        path = made;
        write(path + "/kernel", std::string(4096, 'k'), 0644);
        write(path + "/key", std::string(32, 'K'), 0600);
        config = path + "/vm.ini";
        fd = ::open(config.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        check(fd >= 0);
    }
    ~Dir() {
        ::close(fd);
        for (const char* f : {"/kernel", "/key", "/vm.ini"}) ::unlink((path + f).c_str());
        ::rmdir(path.c_str());
    }
    static void write(const std::string& file, const std::string& text, mode_t mode) {
        int f = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        check(f >= 0);
        check(::fchmod(f, mode) == 0);
        check(::write(f, text.data(), text.size()) == ssize_t(text.size()));
        ::close(f);
    }
    void set(const uint8_t* data, size_t size) {
        check(::ftruncate(fd, 0) == 0);
        check(::pwrite(fd, data, size, 0) == ssize_t(size));
    }
};

// The command lines, after "vmm-launch --config FILE".
const std::vector<std::vector<std::string>> kArgs = {
    {},
    {"--node", "0"},
    {"--node", "1"},
    {"--local"},
    {"--kernel", "kernel", "--memory", "1G"},
    {"--vcpus", "2", "--node", "2"},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace kv;
    static Dir dir;
    static const bool quiet = [] {
        set_log_level(LogLevel::Error);
        return true;
    }();
    (void)quiet;
    if (size == 0) return 0;
    const std::vector<std::string>& extra = kArgs[data[0] % kArgs.size()];
    dir.set(data + 1, size - 1);

    // A kernel named on the command line is relative to the current directory.
    std::vector<std::string> args = {"vmm-launch", "--config", dir.config};
    for (const std::string& a : extra) args.push_back(a == "kernel" ? dir.path + "/kernel" : a);
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);

    Result<config::ParseOutcome> r = config::parse_command_line(int(args.size()), argv.data());
    if (!r.ok()) {
        const std::string& m = r.error().message;
        check(!m.empty() && m.find('\n') == std::string::npos);
        return 0;
    }
    check(r->action == config::ParseOutcome::Action::Run);
    const config::VmConfig& c = r->config;
    check(!c.kernel.empty());
    check(c.vcpus >= 1 && c.vcpus <= config::kMaxVcpus);
    check(c.memory >= config::kMinMemory && c.memory % config::kMemoryAlign == 0);
    check(c.time_dilation >= 1 && c.time_dilation <= config::kMaxTimeDilation);
    if (c.cluster.enabled()) {
        const config::Cluster& cl = c.cluster;
        check(cl.total_vcpus() == c.vcpus && cl.total_memory() == c.memory);
        check(cl.local || cl.self < cl.nodes.size());
        check(cl.key.size() >= config::kMinKeyBytes && cl.key.size() <= config::kMaxKeyBytes);
        for (uint32_t k = 0; k < cl.nodes.size(); ++k) {
            check(cl.nodes[k].id == k && cl.nodes[k].port != 0);
            check(cl.nodes[k].vcpus >= 1 && cl.nodes[k].memory >= config::kMinMemory);
            check(cl.node_vcpus(k).count == cl.nodes[k].vcpus);
        }
        for (unsigned v = 0; v < c.vcpus; ++v) check(cl.vcpu_node(v) < cl.nodes.size());
    }
    for (const auto& [vcpu, migrate] : c.vcpu_migrate) check(vcpu < c.vcpus);
    return 0;
}
