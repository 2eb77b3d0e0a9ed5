// vmm-launch's config file (--config FILE): every key, precedence of the command line,
// FILE:LINE in every error, duplicate keys, sections, and the example under examples/.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/test_support.h"
#include "vmm/config/config.h"

namespace kv::config {
namespace {

class ConfigFile : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kv-config-file-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        kernel_ = write("bzImage", "kernel");
        initrd_ = write("initrd.img", "initrd");
        conf_ = dir_ + "/guest.conf";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& text) {
        std::string path = dir_ + "/" + name;
        std::ofstream(path) << text;
        return path;
    }

    static Result<ParseOutcome> parse(std::vector<std::string> args) {
        return kv::testing::parse_args(std::move(args));
    }

    // Writes `text` as the config file and parses "--config FILE" + extra.
    Result<ParseOutcome> parse_file(const std::string& text, std::vector<std::string> extra = {}) {
        write("guest.conf", text);
        extra.insert(extra.begin(), {"--config", conf_});
        return parse(extra);
    }

    VmConfig run(const std::string& text, std::vector<std::string> extra = {}) {
        Result<ParseOutcome> r = parse_file(text, extra);
        EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
        return r.ok() ? r->config : VmConfig{};
    }

    std::string error(const std::string& text, std::vector<std::string> extra = {}) {
        Result<ParseOutcome> r = parse_file(text, extra);
        EXPECT_FALSE(r.ok());
        return r.ok() ? "" : r.error().message;
    }

    std::string kernel_line() const { return "kernel = " + kernel_ + "\n"; }
    std::string at(int line) const { return conf_ + ":" + std::to_string(line) + ": "; }

    std::string dir_, kernel_, initrd_, conf_;
};

TEST_F(ConfigFile, EveryKeyParsed) {
    VmConfig c = run("# a guest\n" + kernel_line() + "initrd = " + initrd_ +
                     "\n"
                     "cmdline = console=ttyS0 init=/bin/sh quiet\n"
                     "memory = 1G\n"
                     "vcpus = 4\n"
                     "console = file:/var/log/guest.log\n"
                     "on-reboot = exit\n"
                     "stats = yes\n"
                     "log-level = info\n");
    EXPECT_EQ(c.kernel, kernel_);
    EXPECT_EQ(c.initrd, initrd_);
    EXPECT_EQ(c.cmdline, "console=ttyS0 init=/bin/sh quiet");
    EXPECT_EQ(c.memory, 1ull << 30);
    EXPECT_EQ(c.vcpus, 4u);
    EXPECT_EQ(c.console.kind, ConsoleKind::File);
    EXPECT_EQ(c.console.path, "/var/log/guest.log");
    EXPECT_EQ(c.on_reboot, OnReboot::Exit);
    EXPECT_TRUE(c.stats);
    EXPECT_EQ(c.log_level, LogLevel::Info);
    EXPECT_EQ(c.config_file, conf_);
}

TEST_F(ConfigFile, OriginsGiveFileAndLine) {
    VmConfig c = run("\n" + kernel_line() + "\n# memory below\nmemory = 1G\n");
    EXPECT_EQ(c.origin("kernel").kind, Origin::Kind::File);
    EXPECT_EQ(c.origin("kernel").line, 2);
    EXPECT_EQ(c.where("memory"), at(5));
    EXPECT_EQ(c.origin("memory").describe(), conf_ + ":5");
    EXPECT_EQ(c.where("vcpus"), "");  // default
}

TEST_F(ConfigFile, CommentsAndWhitespace) {
    VmConfig c = run("  # indented comment\n\t" + kernel_line() +
                     "memory=2G   # trailing comment\n   vcpus   =   2  \n\n");
    EXPECT_EQ(c.memory, 2ull << 30);
    EXPECT_EQ(c.vcpus, 2u);
}

TEST_F(ConfigFile, ValueRunsToEndOfLineAndMayContainEquals) {
    VmConfig c = run(kernel_line() + "cmdline = console=ttyS0 init=/bin/sh  # not the cmdline\n");
    EXPECT_EQ(c.cmdline, "console=ttyS0 init=/bin/sh");
}

TEST_F(ConfigFile, CrLfLineEndings) {
    VmConfig c = run("kernel = " + kernel_ + "\r\nmemory = 1G\r\n[guest]\r\nvcpus = 2\r\n");
    EXPECT_EQ(c.memory, 1ull << 30);
    EXPECT_EQ(c.vcpus, 2u);
    EXPECT_EQ(c.origin("vcpus").line, 4);
}

TEST_F(ConfigFile, GuestSectionHoldsTheSameKeys) {
    VmConfig c = run("[guest]\n" + kernel_line() + "memory = 256M\nvcpus = 3\n");
    EXPECT_EQ(c.kernel, kernel_);
    EXPECT_EQ(c.memory, 256ull << 20);
    EXPECT_EQ(c.vcpus, 3u);
    EXPECT_EQ(c.origin("vcpus").line, 4);
}

TEST_F(ConfigFile, CommandLineOverridesFile) {
    VmConfig c = run(kernel_line() + "memory = 1G\nvcpus = 2\nconsole = none\nstats = yes\n",
                     {"--memory", "2G", "--console", "stdio", "--stats=no"});
    EXPECT_EQ(c.memory, 2ull << 30);
    EXPECT_EQ(c.origin("memory").kind, Origin::Kind::CommandLine);
    EXPECT_EQ(c.console.kind, ConsoleKind::Stdio);
    EXPECT_FALSE(c.stats);
    EXPECT_EQ(c.vcpus, 2u);  // not overridden: the file's
    EXPECT_EQ(c.origin("vcpus").kind, Origin::Kind::File);
}

TEST_F(ConfigFile, CommandLineOverridesABadFileValueWithoutError) {
    VmConfig c = run(kernel_line() + "memory = 12X\n", {"--memory", "1G"});
    EXPECT_EQ(c.memory, 1ull << 30);
}

TEST_F(ConfigFile, CommandLineCanDropTheFilesInitrd) {
    VmConfig c = run(kernel_line() + "initrd = " + initrd_ + "\n", {"--initrd", ""});
    EXPECT_EQ(c.initrd, "");
}

TEST_F(ConfigFile, RelativePathsAreRelativeToTheFile) {
    VmConfig c = run("kernel = bzImage\ninitrd = initrd.img\nconsole = file:guest.log\n");
    EXPECT_EQ(c.kernel, kernel_);
    EXPECT_EQ(c.initrd, initrd_);
    EXPECT_EQ(c.console.path, dir_ + "/guest.log");
}

TEST_F(ConfigFile, UnknownKeyWithFileAndLine) {
    EXPECT_EQ(error(kernel_line() + "\nmemroy = 1G\n"), at(3) + "unknown key \"memroy\"");
    EXPECT_EQ(error("[guest]\n" + kernel_line() + "cpus = 2\n"), at(3) + "unknown key \"cpus\"");
}

TEST_F(ConfigFile, CommandLineOnlyKeysRefused) {
    EXPECT_EQ(error(kernel_line() + "config = other.conf\n"),
              at(2) + "config: only allowed on the command line");
    EXPECT_EQ(error(kernel_line() + "help = yes\n"),
              at(2) + "help: only allowed on the command line");
}

TEST_F(ConfigFile, UnknownSection) {
    EXPECT_EQ(error(kernel_line() + "[nodes]\naddress = 10.0.0.1\n"),
              at(2) + "unknown section [nodes] (known: [guest], [cluster], [node.K], [vcpu.N])");
}

TEST_F(ConfigFile, SyntaxErrorWithLine) {
    EXPECT_EQ(error(kernel_line() + "memory 1G\n"),
              at(2) + "syntax error: expected \"key = value\" or \"[section]\", got \"memory 1G\"");
    EXPECT_EQ(error(kernel_line() + "\n\n= 1G\n"), at(4) + "syntax error: no key before '='");
    EXPECT_EQ(error("[guest\n" + kernel_line()),
              at(1) + "syntax error: expected \"key = value\" or \"[section]\", got \"[guest\"");
    EXPECT_EQ(error("[gu est]\n"), at(1) + "syntax error: bad section name \"[gu est]\"");
    EXPECT_EQ(error("[]\n"), at(1) + "syntax error: bad section name \"[]\"");
}

TEST_F(ConfigFile, DuplicateKeyIsAnError) {
    EXPECT_EQ(error(kernel_line() + "memory = 1G\nvcpus = 2\nmemory = 2G\n"),
              at(4) + "memory: given twice (first at line 2)");
    // The top level and [guest] are one namespace.
    EXPECT_EQ(error(kernel_line() + "[guest]\nkernel = " + kernel_ + "\n"),
              at(3) + "kernel: given twice (first at line 1)");
}

TEST_F(ConfigFile, BadSizeWithLine) {
    EXPECT_EQ(error(kernel_line() + "memory = 12X\n"),
              at(2) + "memory: \"12X\" is not a size (use e.g. 512M or 2G)");
}

TEST_F(ConfigFile, MemoryTooSmallWithLine) {
    EXPECT_EQ(error(kernel_line() + "memory = 63M\n"),
              at(2) + "memory: 63M is too small (at least 64M)");
}

TEST_F(ConfigFile, VcpusErrorsWithLine) {
    EXPECT_EQ(error(kernel_line() + "vcpus = 0\n"), at(2) + "vcpus: 0 is too few (at least 1)");
    EXPECT_EQ(error(kernel_line() + "vcpus = 300\n"),
              at(2) + "vcpus: 300 is too many (at most 255)");
    EXPECT_EQ(error(kernel_line() + "vcpus = many\n"),
              at(2) + "vcpus: \"many\" is not a whole number");
}

TEST_F(ConfigFile, BadEnumsWithLine) {
    EXPECT_EQ(error(kernel_line() + "console = serial\n"),
              at(2) + "console: \"serial\" is not one of stdio, none, file:PATH");
    EXPECT_EQ(error(kernel_line() + "on-reboot = poweroff\n"),
              at(2) + "on-reboot: \"poweroff\" is not one of restart, exit");
    EXPECT_EQ(error(kernel_line() + "stats =\n"), at(2) + "stats: \"\" is not yes or no");
}

TEST_F(ConfigFile, MissingKernelKey) {
    EXPECT_EQ(error("memory = 1G\n"),
              "kernel: missing (give --kernel PATH, or kernel = PATH in the config file)");
}

TEST_F(ConfigFile, KernelFileMissingWithLine) {
    EXPECT_EQ(error("memory = 1G\nkernel = /nonexistent/vmlinuz\n"),
              at(2) + "kernel: /nonexistent/vmlinuz: No such file or directory");
}

TEST_F(ConfigFile, KernelFileMissingOnCommandLineHasNoFilePrefix) {
    EXPECT_EQ(error(kernel_line(), {"--kernel", "/nonexistent/vmlinuz"}),
              "kernel: /nonexistent/vmlinuz: No such file or directory");
}

TEST_F(ConfigFile, ConfigIsADirectory) {
    EXPECT_EQ(parse({"--config", dir_}).error().message,
              "config: " + dir_ + ": not a regular file");
}

TEST_F(ConfigFile, ExampleConfigParses) {
    // examples/guest.conf names the lab's cache; point kernel and initrd at local files.
    std::filesystem::path example =
        std::filesystem::path(__FILE__).parent_path() / "../../examples/guest.conf";
    ASSERT_TRUE(std::filesystem::exists(example)) << example;
    Result<ParseOutcome> r =
        parse({"--config", example.string(), "--kernel", kernel_, "--initrd", initrd_});
    ASSERT_TRUE(r.ok()) << r.error().message;
    const VmConfig& c = r->config;
    // Every key the file may hold is set in the example.
    for (const char* key :
         {"cmdline", "memory", "vcpus", "console", "on-reboot", "stats", "log-level"}) {
        EXPECT_EQ(c.origin(key).kind, Origin::Kind::File) << key;
    }
}

TEST_F(ConfigFile, ExampleConfigNamesTheLabCache) {
    std::filesystem::path example =
        std::filesystem::path(__FILE__).parent_path() / "../../examples/guest.conf";
    Result<ParseOutcome> r = parse({"--config", example.string()});
    // Where the lab cache exists the example runs as is; elsewhere the error names it.
    if (std::filesystem::exists("/var/cache/kerrvisor/kernels/cloud/vmlinuz") &&
        std::filesystem::exists("/var/cache/kerrvisor/guest/initramfs-cloud.cpio.gz")) {
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_EQ(r->config.kernel, "/var/cache/kerrvisor/kernels/cloud/vmlinuz");
        EXPECT_EQ(r->config.initrd, "/var/cache/kerrvisor/guest/initramfs-cloud.cpio.gz");
    } else {
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.error().message.find("/var/cache/kerrvisor/"), std::string::npos)
            << r.error().message;
    }
}

}  // namespace
}  // namespace kv::config
