// The serial console's monitor (Ctrl-A c): line editing, the commands in kvctl's form,
// every error path, and the console switching between the guest and the monitor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "vmm/control/cli.h"
#include "vmm/control/monitor.h"
#include "vmm/devices/console.h"

namespace kv::control {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A table with a query, a command taking an argument, and one that fails.
CommandTable fake_table(std::string* last_stop_arg = nullptr) {
    CommandTable t;
    t.add("query-status", "running or paused", {}, [](const Json&) -> Reply {
        return Json{{"status", "running"}};
    });
    t.add("query-vcpus", "every vCPU", {}, [](const Json&) -> Reply {
        return Json::array(
            {{{"vcpu", 0}, {"state", "running"}}, {{"vcpu", 1}, {"state", "halted"}}});
    });
    t.add("stop", "pause", {{"why", ArgType::String, false}},
          [last_stop_arg](const Json& a) -> Reply {
              if (last_stop_arg) *last_stop_arg = a.value("why", "");
              return Json::object();
          });
    t.add("system_reset", "reset", {},
          [](const Json&) -> Reply { return generic_error("the guest is not running"); });
    return t;
}

TEST(Cli, AliasesAndArguments) {
    auto r = parse_command({"status"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).cmd, "query-status");
    r = parse_command({"migrate-vcpu", "vcpu=1", "node=0", "why=balance", "opts={\"a\":true}"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    const Json& args = std::get<Request>(r).args;
    EXPECT_EQ(args["vcpu"], 1);
    EXPECT_EQ(args["why"], "balance");
    EXPECT_EQ(args["opts"]["a"], true);
    r = parse_command({"xp", "address=0x101000", "size=0x8", "name=0xg"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).cmd, "memory-read");
    EXPECT_EQ(std::get<Request>(r).args["address"], 0x101000u);
    EXPECT_EQ(std::get<Request>(r).args["size"], 8u);
    EXPECT_EQ(std::get<Request>(r).args["name"], "0xg");
    r = parse_command({"stop", "now"});
    ASSERT_TRUE(std::holds_alternative<std::string>(r));
    EXPECT_EQ(std::get<std::string>(r), "argument 'now' is not KEY=VALUE");
    EXPECT_EQ(alias_of("query-vcpus"), "vcpus");
    EXPECT_EQ(alias_of("migrate-vcpu"), "migrate");
}

TEST(Cli, SnapshotSaveIsTwoWordsAndTakesDashDashFlags) {
    auto r = parse_command({"snapshot", "save", "/var/tmp/s1", "--stop"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).cmd, "snapshot-save");
    EXPECT_EQ(std::get<Request>(r).args, (Json{{"dir", "/var/tmp/s1"}, {"stop", true}}));
    r = parse_command({"snapshot", "save", "/s2", "--incremental-from", "/s1"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).args, (Json{{"dir", "/s2"}, {"incremental-from", "/s1"}}));
    r = parse_command({"snapshot", "save", "/s2", "--incremental-from"});
    ASSERT_TRUE(std::holds_alternative<std::string>(r));
    EXPECT_EQ(std::get<std::string>(r), "--incremental-from needs a snapshot directory");
    r = parse_command({"snapshot-save", "dir=/s", "stop=no"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).args, (Json{{"dir", "/s"}, {"stop", false}}));
}

TEST(Cli, PlainValuesFillTheCommandsPositionalArguments) {
    auto r = parse_command({"migrate", "1", "0"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).cmd, "migrate-vcpu");
    EXPECT_EQ(std::get<Request>(r).args, (Json{{"vcpu", 1}, {"node", 0}}));
    // Mixed: a plain value, then KEY=VALUE.
    r = parse_command({"xp", "0x101000", "size=16"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).args, (Json{{"address", 0x101000u}, {"size", 16}}));
    // yes/no are booleans.
    r = parse_command({"capability", "2", "no"});
    ASSERT_TRUE(std::holds_alternative<Request>(r));
    EXPECT_EQ(std::get<Request>(r).cmd, "set-vcpu-capability");
    EXPECT_EQ(std::get<Request>(r).args, (Json{{"vcpu", 2}, {"migrate", false}}));
    // One value too many is named.
    r = parse_command({"migrate", "1", "0", "2"});
    ASSERT_TRUE(std::holds_alternative<std::string>(r));
    EXPECT_EQ(std::get<std::string>(r),
              "argument '2' is not KEY=VALUE (migrate-vcpu takes at most 2 plain values)");
    EXPECT_EQ(alias_of("quit"), "");
    EXPECT_EQ(split_words("  stop \t why=x  "), (std::vector<std::string>{"stop", "why=x"}));
}

TEST(Monitor, RunsCommandsAsKvctlPrintsThem) {
    std::string why;
    CommandTable t = fake_table(&why);
    Monitor m(t);
    EXPECT_EQ(m.run_line("status"), "status: running\n");
    EXPECT_EQ(m.run_line("query-status"), "status: running\n");
    EXPECT_EQ(m.run_line("vcpus"), "vcpu  state\n0     running\n1     halted\n");
    EXPECT_EQ(m.run_line("stop why=test"), "");
    EXPECT_EQ(why, "test");
    EXPECT_EQ(m.run_line("   "), "");
    EXPECT_EQ(m.run_line("# a comment"), "");
    const std::string help = m.run_line("help");
    EXPECT_NE(help.find("  query-status (status): running or paused\n"), std::string::npos) << help;
    EXPECT_NE(help.find("Ctrl-A c: back to the guest"), std::string::npos) << help;
}

TEST(Monitor, EveryErrorIsALineAndTheMonitorGoesOn) {
    CommandTable t = fake_table();
    Monitor m(t);
    EXPECT_EQ(m.run_line("frobnicate"), "error: unknown command 'frobnicate' (help lists them)\n");
    EXPECT_EQ(m.run_line("stop now"), "error: argument 'now' is not KEY=VALUE\n");
    EXPECT_EQ(m.run_line("stop why=3"), "error: Parameter 'why' expects a string\n");
    EXPECT_EQ(m.run_line("stop how=x"), "error: Parameter 'how' is unexpected\n");
    EXPECT_EQ(m.run_line("reset"), "error: the guest is not running\n");
    EXPECT_EQ(m.run_line("top"), "error: top is kvctl's (kvctl --socket PATH top)\n");
    EXPECT_EQ(m.run_line("status"), "status: running\n");
}

TEST(Monitor, EditsItsOwnLineOnARawTerminal) {
    CommandTable t = fake_table();
    Monitor m(t);
    const std::string banner = m.enter();
    EXPECT_NE(banner.find("Ctrl-A c returns to the guest"), std::string::npos);
    EXPECT_EQ(banner.substr(banner.size() - 5), "(kv) ");
    // Typed characters echo; Backspace (DEL) erases one; CR LF is one Enter.
    EXPECT_EQ(m.feed(bytes("statq\x7fus\r\n")), "statq\b \bus\nstatus: running\n(kv) ");
    // Ctrl-U erases the line, Ctrl-C drops it; arrow keys (ESC [ A) are ignored.
    EXPECT_EQ(m.feed(bytes("xy\x15")), "xy\b \b\b \b");
    EXPECT_EQ(m.feed(bytes("zz\x03")), "zz^C\n(kv) ");
    EXPECT_EQ(m.feed(bytes("\x1b[A\x1b[1;5Cstatus\n")), "status\nstatus: running\n(kv) ");
    // An Enter split from its LF across reads is still one Enter; a control byte rings.
    EXPECT_EQ(m.feed(bytes("\r")), "\n(kv) ");
    EXPECT_EQ(m.feed(bytes("\n")), "");
    EXPECT_EQ(m.feed(bytes("\x02")), "\a");
    // A line past kMaxLine takes no more characters.
    std::string longer(Monitor::kMaxLine + 3, 'a');
    std::string echoed = m.feed(bytes(longer));
    EXPECT_EQ(echoed, std::string(Monitor::kMaxLine, 'a') + "\a\a\a");
    EXPECT_EQ(m.leave(), "\n");
}

// The console end to end: bytes before Ctrl-A c reach the guest's UART, the command typed
// after it reaches the monitor (its answer on the terminal, the guest's output held
// meanwhile), and after the second Ctrl-A c the guest has the input again.
TEST(Monitor, TheConsoleSwitchesBetweenGuestAndMonitor) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    std::mutex mu;
    std::string term;
    ConsoleOutput out([&](std::span<const uint8_t> b) {
        std::lock_guard lk(mu);
        term.append(b.begin(), b.end());
    });
    Uart8250 uart(IrqLine(), out.guest_sink());
    CommandTable t = fake_table();
    Monitor m(t);
    Console::Options o;
    o.in_fd = p[0];
    o.monitor = &m;
    o.output = &out;
    auto console = Console::start(uart, nullptr, o);
    ASSERT_TRUE(console.ok()) << console.error().message;
    const std::string typed =
        "k\x01"
        "cstatus\r\x01"
        "cz";
    ASSERT_EQ(write(p[1], typed.data(), typed.size()), ssize_t(typed.size()));
    // 'k' and 'z' reach the UART, in that order, the monitor's answer between them.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (uart.pending_input() < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    ASSERT_EQ(uart.pending_input(), 2u);
    uint8_t b = 0;
    uart.read(Uart8250::kRbrThr, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, 'k');
    uart.read(Uart8250::kRbrThr, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, 'z');
    (*console)->stop();
    std::lock_guard lk(mu);
    EXPECT_NE(term.find("(kv) status\nstatus: running\n(kv) \n"), std::string::npos) << term;
    close(p[0]);
    close(p[1]);
}

}  // namespace
}  // namespace kv::control
