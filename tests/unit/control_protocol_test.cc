// The control protocol's pure part: requests, replies, errors, negotiation, events, framing.
#include <gtest/gtest.h>

#include "vmm/control/protocol.h"

namespace kv::control {
namespace {

Json parse(const std::string& s) {
    Json j = Json::parse(s, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << s;
    return j;
}

struct Fixture {
    CommandTable table;
    Session session{table};
    Fixture() {
        table.add("echo", "returns its arguments",
                  {{"n", ArgType::Uint, true}, {"s", ArgType::String, false}},
                  [](const Json& a) -> Reply { return a; });
        table.add("fail", "always fails", {}, [](const Json&) -> Reply {
            return CommandError{"DeviceNotFound", "no such"};
        });
    }
    Json send(const std::string& line) { return parse(session.handle_line(line)); }
    void negotiate() {
        EXPECT_EQ(send(R"({"execute": "qmp_capabilities"})"), parse(R"({"return": {}})"));
    }
};

std::string error_class(const Json& j) {
    return j.at("error").at("class");
}
std::string error_desc(const Json& j) {
    return j.at("error").at("desc");
}

TEST(ControlProtocol, GreetingHasQmpLayout) {
    Fixture f;
    Json g = parse(f.session.greeting());
    EXPECT_TRUE(g["QMP"]["version"]["qemu"].contains("major"));
    EXPECT_EQ(g["QMP"]["version"]["package"], "kerrvisor");
    EXPECT_TRUE(g["QMP"]["capabilities"].is_array());
}

TEST(ControlProtocol, CommandsBeforeNegotiationAreRefused) {
    Fixture f;
    Json r = f.send(R"({"execute": "echo", "arguments": {"n": 1}})");
    EXPECT_EQ(error_class(r), "CommandNotFound");
    EXPECT_NE(error_desc(r).find("qmp_capabilities"), std::string::npos);
    EXPECT_FALSE(f.session.negotiated());
    f.negotiate();
    EXPECT_TRUE(f.session.negotiated());
}

TEST(ControlProtocol, NegotiatingTwiceIsAnError) {
    Fixture f;
    f.negotiate();
    EXPECT_EQ(error_class(f.send(R"({"execute": "qmp_capabilities"})")), "CommandNotFound");
}

TEST(ControlProtocol, ReturnsTheHandlersValueAndEchoesTheId) {
    Fixture f;
    f.negotiate();
    for (const char* id : {"7", "\"abc\"", "null", "[1,2]", "{\"k\":1}", "1.5"}) {
        Json r =
            f.send(std::string(R"({"execute": "echo", "arguments": {"n": 3}, "id": )") + id + "}");
        EXPECT_EQ(r["return"], parse(R"({"n": 3})")) << id;
        EXPECT_EQ(r["id"], parse(id)) << id;
    }
    Json r = f.send(R"({"execute": "echo", "arguments": {"n": 3}})");
    EXPECT_FALSE(r.contains("id"));
}

TEST(ControlProtocol, MalformedRequestsGetGenericErrors) {
    Fixture f;
    f.negotiate();
    struct Case {
        const char* line;
        const char* desc_part;
    } cases[] = {
        {"{not json", "JSON parse error"},
        {"[1, 2]", "must be a JSON object"},
        {"42", "must be a JSON object"},
        {R"({"arguments": {}})", "no member 'execute'"},
        {R"({"execute": 5})", "'execute' must be a string"},
        {R"({"execute": "echo", "arguments": [1]})", "'arguments' must be an object"},
        {R"({"execute": "echo", "bogus": 1})", "member 'bogus' is unexpected"},
    };
    for (const auto& c : cases) {
        Json r = f.send(c.line);
        EXPECT_EQ(error_class(r), "GenericError") << c.line;
        EXPECT_NE(error_desc(r).find(c.desc_part), std::string::npos) << c.line << ": " << r;
    }
    // The session goes on after every one of them.
    EXPECT_EQ(f.send(R"({"execute": "echo", "arguments": {"n": 1}})")["return"]["n"], 1);
}

TEST(ControlProtocol, UnknownCommandIsCommandNotFound) {
    Fixture f;
    f.negotiate();
    Json r = f.send(R"({"execute": "frobnicate", "id": 1})");
    EXPECT_EQ(error_class(r), "CommandNotFound");
    EXPECT_EQ(error_desc(r), "The command frobnicate has not been found");
    EXPECT_EQ(r["id"], 1);
}

TEST(ControlProtocol, ArgumentsAreCheckedAgainstTheSpec) {
    Fixture f;
    f.negotiate();
    EXPECT_EQ(error_desc(f.send(R"({"execute": "echo"})")), "Parameter 'n' is missing");
    EXPECT_EQ(error_desc(f.send(R"({"execute": "echo", "arguments": {"n": 1, "x": 2}})")),
              "Parameter 'x' is unexpected");
    EXPECT_EQ(error_desc(f.send(R"({"execute": "echo", "arguments": {"n": -1}})")),
              "Parameter 'n' expects a non-negative integer");
    EXPECT_EQ(error_desc(f.send(R"({"execute": "echo", "arguments": {"n": "1"}})")),
              "Parameter 'n' expects a non-negative integer");
    EXPECT_EQ(error_desc(f.send(R"({"execute": "echo", "arguments": {"n": 1, "s": 2}})")),
              "Parameter 's' expects a string");
    EXPECT_EQ(f.send(R"({"execute": "echo", "arguments": {"n": 1, "s": "x"}})")["return"]["s"],
              "x");
}

TEST(ControlProtocol, HandlerErrorsKeepTheirClass) {
    Fixture f;
    f.negotiate();
    Json r = f.send(R"({"execute": "fail"})");
    EXPECT_EQ(error_class(r), "DeviceNotFound");
    EXPECT_EQ(error_desc(r), "no such");
}

TEST(ControlProtocol, QueryCommandsListsBuiltinsAndTable) {
    Fixture f;
    f.negotiate();
    Json r = f.send(R"({"execute": "query-commands"})")["return"];
    std::vector<std::string> names;
    for (const auto& c : r) names.push_back(c["name"]);
    for (const char* n : {"qmp_capabilities", "query-commands", "query-version", "echo", "fail"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    EXPECT_EQ(f.send(R"({"execute": "query-version"})")["return"]["package"], "kerrvisor");
}

TEST(ControlProtocol, OverflowReplyIsAGenericError) {
    Fixture f;
    Json r = parse(f.session.overflow_reply(70000));
    EXPECT_EQ(error_class(r), "GenericError");
    EXPECT_NE(error_desc(r).find("65536"), std::string::npos);
}

TEST(ControlProtocol, EventsHaveQmpLayout) {
    auto t = std::chrono::system_clock::time_point(std::chrono::microseconds(1'500'000'123));
    Json e = parse(format_event("STOP", nullptr, t));
    EXPECT_EQ(e["event"], "STOP");
    EXPECT_FALSE(e.contains("data"));
    EXPECT_EQ(e["timestamp"]["seconds"], 1500);
    EXPECT_EQ(e["timestamp"]["microseconds"], 123);
    Json d = parse(format_event("SHUTDOWN", Json{{"guest", true}}, t));
    EXPECT_EQ(d["data"]["guest"], true);
}

TEST(LineFramer, SplitsLinesAcrossChunks) {
    LineFramer f(16);
    auto a = f.feed("ab");
    EXPECT_TRUE(a.empty());
    auto b = f.feed("c\ndef\r\n\ng");
    ASSERT_EQ(b.size(), 3u);
    EXPECT_EQ(b[0].line, "abc");
    EXPECT_EQ(b[1].line, "def");
    EXPECT_EQ(b[2].line, "");
    auto c = f.feed("h\n");
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].line, "gh");
}

TEST(LineFramer, AnOverlongLineIsReportedOnceAndFramingGoesOn) {
    LineFramer f(8);
    auto a = f.feed("0123456789");  // over the limit, no newline yet
    ASSERT_EQ(a.size(), 1u);
    EXPECT_TRUE(a[0].overflow);
    EXPECT_EQ(a[0].length, 10u);
    EXPECT_TRUE(f.feed("more bytes of the same line").empty());
    auto b = f.feed("tail\nok\n");
    ASSERT_EQ(b.size(), 1u);
    EXPECT_FALSE(b[0].overflow);
    EXPECT_EQ(b[0].line, "ok");
    auto c = f.feed("123456789\nx\n");  // overlong and complete in one chunk
    ASSERT_EQ(c.size(), 2u);
    EXPECT_TRUE(c[0].overflow);
    EXPECT_EQ(c[1].line, "x");
}

}  // namespace
}  // namespace kv::control
