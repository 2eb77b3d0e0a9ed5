// The control socket: permissions, several clients, bad input, events, peer refusal, and
// kvctl against it.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "vmm/control/client.h"
#include "vmm/control/render.h"
#include "vmm/control/server.h"

namespace kv::control {
namespace {

namespace fs = std::filesystem;

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/kv-control-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

CommandTable fake_table() {
    CommandTable t;
    t.add("query-status", "", {}, [](const Json&) -> Reply {
        return Json{{"running", true}, {"singlestep", false}, {"status", "running"}};
    });
    t.add("query-vcpus", "", {}, [](const Json&) -> Reply {
        return Json::array({{{"vcpu", 0}, {"node", 0}, {"state", "running"}, {"exits", 10}},
                            {{"vcpu", 1}, {"node", 1}, {"state", "paused"}, {"exits", 12345}}});
    });
    // Every call reports 1000 more exits and 10 more faults on node 1, and vCPU 1 ran the
    // whole time since the last call.
    t.add("query-stats", "", {}, [](const Json&) -> Reply {
        static uint64_t calls = 0;
        static auto start = std::chrono::steady_clock::now();
        ++calls;
        const uint64_t up = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now() - start)
                                         .count());
        Json n0{{"node", 0},
                {"address", "10.0.0.1:7000"},
                {"state", "running"},
                {"vcpus", Json::array({{{"vcpu", 0},
                                        {"node", 0},
                                        {"state", "running"},
                                        {"exits", 5},
                                        {"halts", 0},
                                        {"running_ns", 0}}})}};
        Json n1{{"node", 1},
                {"address", "10.0.0.2:7000"},
                {"state", "running"},
                {"vcpus", Json::array({{{"vcpu", 1},
                                        {"node", 1},
                                        {"state", "running"},
                                        {"exits", 1000 * calls},
                                        {"halts", 0},
                                        {"running_ns", up}}})},
                {"memory", {{"faults", {{"read_missing", 10 * calls}}}}}};
        return Json{{"nodes", Json::array({n0, n1})}};
    });
    t.add("fail", "", {}, [](const Json&) -> Reply {
        return CommandError{"DeviceNotFound", "nothing there"};
    });
    return t;
}

// A raw connection: lines in and out, each read bounded by `ms`.
struct Raw {
    int fd = -1;
    std::string buf;
    explicit Raw(const std::string& path) {
        fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        path.copy(a.sun_path, path.size());
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
            ::close(fd);
            fd = -1;
        }
    }
    ~Raw() {
        if (fd >= 0) ::close(fd);
    }
    void send(const std::string& s) {
        ASSERT_EQ(::write(fd, s.data(), s.size()), ssize_t(s.size()));
    }
    // The next line, or "" on EOF or after `ms` without one.
    std::string line(int ms = 5000) {
        for (;;) {
            if (auto nl = buf.find('\n'); nl != std::string::npos) {
                std::string l = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                return l;
            }
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, ms) != 1) return "";
            char b[65536];
            ssize_t n = ::read(fd, b, sizeof b);
            if (n <= 0) return "";
            buf.append(b, size_t(n));
        }
    }
    Json json(int ms = 5000) {
        Json j = Json::parse(line(ms), nullptr, false);
        return j;
    }
    void negotiate() {
        ASSERT_TRUE(json().contains("QMP"));
        send("{\"execute\": \"qmp_capabilities\"}\n");
        ASSERT_TRUE(json().contains("return"));
    }
};

TEST(ControlServer, SocketIsMode0600AndRemovedAtTheEnd) {
    TempDir d;
    auto table = fake_table();
    std::string path = d.path / "s";
    {
        auto s = ControlServer::create(path, table);
        ASSERT_TRUE(s) << s.error().message;
        struct stat st {};
        ASSERT_EQ(::lstat(path.c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 0777, 0600u);
    }
    EXPECT_FALSE(fs::exists(path));
}

TEST(ControlServer, AStaleSocketIsReplacedAndAFileIsRefused) {
    TempDir d;
    auto table = fake_table();
    std::string path = d.path / "s";
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, path.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);  // a socket file nobody listens on
    {
        auto s = ControlServer::create(path, table);
        ASSERT_TRUE(s) << s.error().message;
        Raw c(path);
        EXPECT_TRUE(c.json().contains("QMP"));
    }
    std::string file = d.path / "file";
    std::ofstream(file) << "keep me";
    auto s = ControlServer::create(file, table);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("is not a socket"), std::string::npos) << s.error().message;
    EXPECT_TRUE(fs::exists(file));
}

TEST(ControlServer, TwoClientsGetTheirOwnRepliesAndBadLinesDoNotEndAConnection) {
    TempDir d;
    auto table = fake_table();
    auto s = ControlServer::create(d.path / "s", table);
    ASSERT_TRUE(s) << s.error().message;
    Raw a((*s)->path()), b((*s)->path());
    a.negotiate();
    b.negotiate();
    a.send("{\"execute\": \"query-status\", \"id\": \"a\"}\n");
    b.send("this is not json\n{\"execute\": \"query-vcpus\", \"id\": \"b\"}\n");
    Json ra = a.json();
    EXPECT_EQ(ra["id"], "a");
    EXPECT_EQ(ra["return"]["status"], "running");
    Json e = b.json();
    EXPECT_EQ(e["error"]["class"], "GenericError");
    Json rb = b.json();
    EXPECT_EQ(rb["id"], "b");
    EXPECT_EQ(rb["return"].size(), 2u);
}

TEST(ControlServer, AnOversizedLineGetsAnErrorAndTheNextLineWorks) {
    TempDir d;
    auto table = fake_table();
    auto s = ControlServer::create(d.path / "s", table);
    ASSERT_TRUE(s) << s.error().message;
    Raw c((*s)->path());
    c.negotiate();
    c.send(std::string(kMaxLine + 100, 'x') + "\n{\"execute\": \"query-status\", \"id\": 2}\n");
    Json e = c.json();
    EXPECT_EQ(e["error"]["class"], "GenericError");
    EXPECT_NE(e["error"]["desc"].get<std::string>().find("exceeds"), std::string::npos);
    EXPECT_EQ(c.json()["id"], 2);
}

TEST(ControlServer, EventsReachNegotiatedClientsOnly) {
    TempDir d;
    auto table = fake_table();
    auto s = ControlServer::create(d.path / "s", table);
    ASSERT_TRUE(s) << s.error().message;
    Raw yes((*s)->path()), no((*s)->path());
    yes.negotiate();
    ASSERT_TRUE(no.json().contains("QMP"));
    (*s)->emit("STOP");
    Json e = yes.json();
    EXPECT_EQ(e["event"], "STOP");
    // The other client, asked something after the event, gets only its reply.
    no.send("{\"execute\": \"qmp_capabilities\", \"id\": 9}\n");
    EXPECT_EQ(no.json()["id"], 9);
    EXPECT_EQ(no.line(200), "");
}

// A handler's events (a long command's progress) reach the clients before its reply,
// while it runs: here the handler waits until the listening client has seen its event.
TEST(ControlServer, AHandlersEventsGoOutWhileItRuns) {
    TempDir d;
    auto table = fake_table();
    ControlServer* server = nullptr;
    std::promise<void> seen;
    auto seen_f = seen.get_future().share();
    table.add("long", "", {}, [&](const Json&) -> Reply {
        server->emit("PROGRESS", {{"step", 1}});
        if (seen_f.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
            return CommandError{"GenericError", "the event did not arrive while the command ran"};
        return Json{{"done", true}};
    });
    auto s = ControlServer::create(d.path / "s", table);
    ASSERT_TRUE(s) << s.error().message;
    server = s->get();
    Raw asker((*s)->path()), listener((*s)->path());
    asker.negotiate();
    listener.negotiate();
    asker.send("{\"execute\": \"long\", \"id\": 1}\n");
    Json e = listener.json();
    EXPECT_EQ(e["event"], "PROGRESS");
    seen.set_value();
    Json first = asker.json();
    EXPECT_EQ(first["event"], "PROGRESS");
    Json reply = asker.json();
    EXPECT_EQ(reply["id"], 1);
    EXPECT_EQ(reply["return"]["done"], true) << reply.dump();
}

TEST(ControlServer, APeerTheUidRuleRefusesIsClosedWithoutAGreeting) {
    TempDir d;
    auto table = fake_table();
    auto s = ControlServer::create(d.path / "s", table, [](uid_t) { return false; });
    ASSERT_TRUE(s) << s.error().message;
    Raw c((*s)->path());
    ASSERT_GE(c.fd, 0);
    EXPECT_EQ(c.line(), "");  // EOF, no greeting
}

TEST(ControlRender, TablesAndKeyValueLines) {
    Json rows = Json::array(
        {{{"vcpu", 0}, {"state", "running"}}, {{"vcpu", 12}, {"state", "paused"}, {"x", nullptr}}});
    EXPECT_EQ(render(rows),
              "vcpu  state    x\n"
              "0     running  -\n"
              "12    paused   -\n");
    EXPECT_EQ(render(Json{{"running", true}, {"status", "paused"}}),
              "running: true\nstatus: paused\n");
    EXPECT_EQ(render(Json::object()), "");
    EXPECT_EQ(render(Json{{"n", 1}, {"list", rows}}),
              "n: 1\n\nlist:\nvcpu  state    x\n0     running  -\n12    paused   -\n");
}

// kvctl is built next to the tests: build/vmm/kvctl beside build/tests/<this test>.
std::string kvctl_path() {
    return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "vmm" / "kvctl")
        .string();
}

struct Output {
    int status = -1;
    std::string out;
};
Output run(const std::string& cmd) {
    Output o;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return o;
    char b[4096];
    size_t n;
    while ((n = std::fread(b, 1, sizeof b, p)) > 0) o.out.append(b, n);
    int ws = ::pclose(p);
    o.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    return o;
}

// kvctl against a server of fake_table() on a socket of its own.
class Kvctl : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(fs::exists(kvctl)) << "kvctl is not built: " << kvctl << " is missing";
        auto s = ControlServer::create(dir.path / "s", table);
        ASSERT_TRUE(s) << s.error().message;
        server = std::move(*s);
        sock = " --socket " + server->path();
    }
    const std::string kvctl = kvctl_path();
    TempDir dir;
    CommandTable table = fake_table();
    std::unique_ptr<ControlServer> server;
    std::string sock;  // " --socket PATH", to put after kvctl
};

TEST_F(Kvctl, TalksToTheServer) {
    Output st = run(kvctl + sock + " status");
    EXPECT_EQ(st.status, 0) << st.out;
    EXPECT_EQ(st.out, "running: true\nsinglestep: false\nstatus: running\n");

    Output v = run(kvctl + sock + " vcpus");
    EXPECT_EQ(v.status, 0) << v.out;
    EXPECT_NE(v.out.find("vcpu  node  state    exits"), std::string::npos) << v.out;

    Output j = run(kvctl + sock + " --json vcpus");
    EXPECT_EQ(j.status, 0) << j.out;
    Json parsed = Json::parse(j.out, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << j.out;
    EXPECT_EQ(parsed[1]["exits"], 12345);

    Output f = run(kvctl + sock + " fail");
    EXPECT_EQ(f.status, 1);
    EXPECT_EQ(f.out, "kvctl: DeviceNotFound: nothing there\n");

    Output u = run(kvctl + sock + " frobnicate");
    EXPECT_EQ(u.status, 1);
    EXPECT_NE(u.out.find("CommandNotFound"), std::string::npos) << u.out;

    Output bad = run(kvctl + sock + " status notkeyvalue");
    EXPECT_EQ(bad.status, 2);
    EXPECT_NE(bad.out.find("is not KEY=VALUE"), std::string::npos) << bad.out;
}

TEST_F(Kvctl, WithoutACommandItIsAConsoleThatReadsStandardInput) {
    // Comments and blank lines are skipped; an error reply and bad usage do not end it;
    // "exit" does, so the last line is never sent.
    Output o =
        run("printf 'status\n\n# a comment\nfail\nstatus x\nhelp\nvcpus\nexit\n"
            "status\n' | " +
            kvctl + sock);
    EXPECT_EQ(o.status, 2) << o.out;  // the last failure was bad usage
    EXPECT_EQ(o.out.find("running: true"), 0u) << o.out;
    EXPECT_NE(o.out.find("kvctl: DeviceNotFound: nothing there\n"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("argument 'x' is not KEY=VALUE"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("  query-vcpus (vcpus)\n"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("vcpu  node  state    exits"), std::string::npos) << o.out;
    EXPECT_EQ(o.out.find("running: true"), o.out.rfind("running: true")) << o.out;

    Output ok = run("printf 'status\n' | " + kvctl + sock);
    EXPECT_EQ(ok.status, 0) << ok.out;
    Output j = run("printf 'status\n' | " + kvctl + " --json" + sock);
    Json parsed = Json::parse(j.out, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << j.out;
    EXPECT_EQ(parsed["status"], "running");
}

TEST_F(Kvctl, TopShowsRatesPerNodeAndVcpu) {
    Output o = run(kvctl + sock + " --json top --interval 0.2 --count 2");
    EXPECT_EQ(o.status, 0) << o.out;
    std::istringstream lines(o.out);
    int n = 0;
    for (std::string line; std::getline(lines, line); ++n) {
        Json v = Json::parse(line, nullptr, false);
        ASSERT_FALSE(v.is_discarded()) << line;
        ASSERT_EQ(v["nodes"].size(), 2u) << line;
        // 1000 exits and 10 faults per 0.2 s interval on node 1 (the interval is at least
        // 0.2 s, so the rates are at most 5000 and 50); node 0 stands still.
        const int exits = std::stoi(v["nodes"][1]["exits/s"].get<std::string>());
        EXPECT_GT(exits, 0) << line;
        EXPECT_LE(exits, 5000) << line;
        EXPECT_LE(std::stoi(v["nodes"][1]["faults/s"].get<std::string>()), 50) << line;
        EXPECT_EQ(v["nodes"][0]["exits/s"], "0") << line;
        EXPECT_EQ(v["vcpus"][0]["load"], "0%") << line;
        // vCPU 1 ran the whole interval (as measured by the server, so a little under).
        EXPECT_GE(std::stoi(v["vcpus"][1]["load"].get<std::string>()), 90) << line;
        EXPECT_EQ(v["nodes"][1]["address"], "10.0.0.2:7000");
    }
    EXPECT_EQ(n, 2) << o.out;
    Output text = run(kvctl + sock + " top --interval 0.1 --count 1");
    EXPECT_EQ(text.status, 0) << text.out;
    EXPECT_NE(text.out.find("kvctl top: 2 node(s)"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("node  address        state    vcpus  load"), std::string::npos)
        << text.out;
    Output bad = run(kvctl + sock + " top --interval 0");
    EXPECT_EQ(bad.status, 2) << bad.out;
}

TEST_F(Kvctl, NamesAMissingSocketAndBadUsage) {
    Output m = run(kvctl + " --socket /nonexistent/kv.sock status");
    EXPECT_EQ(m.status, 1);
    EXPECT_NE(m.out.find("/nonexistent/kv.sock"), std::string::npos) << m.out;
    Output none = run("env -u KERRVISOR_CONTROL " + kvctl + " status");
    EXPECT_EQ(none.status, 2);
    EXPECT_NE(none.out.find("no control socket"), std::string::npos) << none.out;
    Output h = run(kvctl + " --help");
    EXPECT_EQ(h.status, 0);
    EXPECT_NE(h.out.find("SYNOPSIS"), std::string::npos);
    Output o = run(kvctl + " --frob status");
    EXPECT_EQ(o.status, 2);
}

}  // namespace
}  // namespace kv::control
