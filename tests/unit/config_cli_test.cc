// vmm-launch's command line: every key, defaults, units, and each input error.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/test_support.h"
#include "vmm/config/config.h"
#include "vmm/config/keys.h"

namespace kv::config {
namespace {

class ConfigCli : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kv-config-cli-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        kernel_ = write("bzImage", "not really a kernel");
        initrd_ = write("initrd.img", "not really an initrd");
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

    // Parses args (plus --kernel) and expects a run outcome.
    VmConfig run(std::vector<std::string> args) {
        args.insert(args.begin(), {"--kernel", kernel_});
        Result<ParseOutcome> r = parse(args);
        EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
        if (!r.ok()) return {};
        EXPECT_EQ(r->action, ParseOutcome::Action::Run);
        return r->config;
    }

    // Parses args (plus --kernel) and returns the error message.
    std::string error(std::vector<std::string> args, bool with_kernel = true) {
        if (with_kernel) args.insert(args.begin(), {"--kernel", kernel_});
        Result<ParseOutcome> r = parse(args);
        EXPECT_FALSE(r.ok());
        return r.ok() ? "" : r.error().message;
    }

    std::string dir_, kernel_, initrd_;
};

TEST_F(ConfigCli, DefaultsWithOnlyKernel) {
    VmConfig c = run({});
    EXPECT_EQ(c.kernel, kernel_);
    EXPECT_EQ(c.initrd, "");
    EXPECT_EQ(c.cmdline, "console=ttyS0");
    EXPECT_EQ(c.memory, 512ull << 20);
    EXPECT_EQ(c.vcpus, 1u);
    EXPECT_EQ(c.console.kind, ConsoleKind::Stdio);
    EXPECT_EQ(c.on_reboot, OnReboot::Restart);
    EXPECT_FALSE(c.stats);
    EXPECT_EQ(c.log_level, LogLevel::Warn);
    EXPECT_EQ(c.config_file, "");
    EXPECT_EQ(c.origin("memory").kind, Origin::Kind::Default);
    EXPECT_EQ(c.origin("kernel").kind, Origin::Kind::CommandLine);
    EXPECT_EQ(c.where("kernel"), "");
}

TEST_F(ConfigCli, EveryKeyParsed) {
    VmConfig c =
        run({"--initrd", initrd_, "--cmdline", "console=ttyS0 quiet init=/bin/sh", "--memory", "2G",
             "--vcpus", "4", "--console", "file:/tmp/guest.log", "--on-reboot", "exit", "--stats",
             "--log-level", "debug", "--time-dilation", "10"});
    EXPECT_EQ(c.initrd, initrd_);
    EXPECT_EQ(c.cmdline, "console=ttyS0 quiet init=/bin/sh");
    EXPECT_EQ(c.memory, 2ull << 30);
    EXPECT_EQ(c.vcpus, 4u);
    EXPECT_EQ(c.console.kind, ConsoleKind::File);
    EXPECT_EQ(c.console.path, "/tmp/guest.log");
    EXPECT_EQ(c.on_reboot, OnReboot::Exit);
    EXPECT_TRUE(c.stats);
    EXPECT_EQ(c.log_level, LogLevel::Debug);
    EXPECT_EQ(c.time_dilation, 10u);
}

TEST_F(ConfigCli, EqualsFormAndEnumValues) {
    VmConfig c = run({"--memory=1G", "--console=none", "--on-reboot=restart", "--stats=no",
                      "--log-level=error", "--vcpus=255"});
    EXPECT_EQ(c.memory, 1ull << 30);
    EXPECT_EQ(c.console.kind, ConsoleKind::None);
    EXPECT_EQ(c.on_reboot, OnReboot::Restart);
    EXPECT_FALSE(c.stats);
    EXPECT_EQ(c.log_level, LogLevel::Error);
    EXPECT_EQ(c.vcpus, 255u);
    EXPECT_EQ(run({"--log-level", "info"}).log_level, LogLevel::Info);
    EXPECT_EQ(run({"--log-level", "warning"}).log_level, LogLevel::Warn);
    EXPECT_EQ(run({"--console", "stdio"}).console.kind, ConsoleKind::Stdio);
}

TEST_F(ConfigCli, MemoryUnits) {
    EXPECT_EQ(run({"--memory", "512M"}).memory, 512ull << 20);
    EXPECT_EQ(run({"--memory", "65536K"}).memory, 64ull << 20);
    EXPECT_EQ(run({"--memory", "3GiB"}).memory, 3ull << 30);
    EXPECT_EQ(run({"--memory", "1t"}).memory, 1ull << 40);
    EXPECT_EQ(run({"--memory", "67108864"}).memory, 64ull << 20);  // plain bytes
    EXPECT_EQ(run({"--memory", "64M"}).memory, 64ull << 20);       // the minimum itself
}

TEST_F(ConfigCli, MemoryRoundedUpTo4KiB) {
    EXPECT_EQ(run({"--memory", "100000001"}).memory, 100003840u);
    EXPECT_EQ(run({"--memory", "100003840"}).memory, 100003840u);
}

TEST_F(ConfigCli, LastOfARepeatedOptionWins) {
    EXPECT_EQ(run({"--memory", "1G", "--memory", "2G"}).memory, 2ull << 30);
}

TEST_F(ConfigCli, EmptyInitrdMeansNone) {
    EXPECT_EQ(run({"--initrd", ""}).initrd, "");
}

TEST_F(ConfigCli, HelpNamesEveryKeyWithItsDefault) {
    for (const char* opt : {"--help", "-h"}) {
        Result<ParseOutcome> r = parse({opt});
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r->action, ParseOutcome::Action::Print);
        for (const KeyInfo& k : all_keys()) {
            EXPECT_NE(r->text.find("--" + std::string(k.name)), std::string::npos) << k.name;
            if (!k.fallback.empty()) {
                EXPECT_NE(r->text.find("Default: " + std::string(k.fallback)), std::string::npos)
                    << k.name;
            }
        }
    }
}

TEST_F(ConfigCli, HelpNeedsNoKernel) {
    Result<ParseOutcome> r = parse({"--memory", "1G", "--help"});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->action, ParseOutcome::Action::Print);
}

TEST_F(ConfigCli, Version) {
    Result<ParseOutcome> r = parse({"--version"});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->action, ParseOutcome::Action::Print);
    EXPECT_EQ(r->text.rfind("vmm-launch (Kerrvisor) ", 0), 0u);
}

TEST_F(ConfigCli, UnknownOption) {
    EXPECT_EQ(error({"--foo"}), "unknown option --foo");
    EXPECT_EQ(error({"--foo=3"}), "unknown option --foo");
    EXPECT_EQ(error({"-x"}), "unknown option -x");
}

TEST_F(ConfigCli, AbbreviationsAreNotGuessed) {
    EXPECT_EQ(error({"--mem", "1G"}), "unknown option --mem");
}

TEST_F(ConfigCli, StrayArgument) {
    EXPECT_EQ(error({"extra"}), "unexpected argument \"extra\" (options are --key VALUE)");
}

TEST_F(ConfigCli, MissingValue) {
    EXPECT_EQ(error({"--memory"}), "memory: missing value (--memory VALUE)");
}

TEST_F(ConfigCli, EmptyValueAfterEquals) {
    EXPECT_EQ(error({"--initrd="}),
              "initrd: nothing after '=' (write --initrd \"\" for an empty value)");
}

TEST_F(ConfigCli, FlagWithValue) {
    EXPECT_EQ(error({"--help=1"}), "help: takes no value");
}

TEST_F(ConfigCli, BadSize) {
    EXPECT_EQ(error({"--memory", "12X"}), "memory: \"12X\" is not a size (use e.g. 512M or 2G)");
    EXPECT_EQ(error({"--memory", "-1G"}), "memory: \"-1G\" is not a size (use e.g. 512M or 2G)");
    EXPECT_EQ(error({"--memory", ""}), "memory: \"\" is not a size (use e.g. 512M or 2G)");
}

TEST_F(ConfigCli, MemoryTooSmall) {
    EXPECT_EQ(error({"--memory", "32M"}), "memory: 32M is too small (at least 64M)");
    EXPECT_EQ(error({"--memory", "1024"}),
              "memory: 1024 is too small (at least 64M; a number without a suffix is bytes)");
}

TEST_F(ConfigCli, MemoryTooLarge) {
    EXPECT_EQ(error({"--memory", "8192T"}), "memory: 8192T is too large (at most 4096T)");
}

TEST_F(ConfigCli, VcpusZero) {
    EXPECT_EQ(error({"--vcpus", "0"}), "vcpus: 0 is too few (at least 1)");
}

TEST_F(ConfigCli, VcpusTooMany) {
    EXPECT_EQ(error({"--vcpus", "300"}), "vcpus: 300 is too many (at most 255)");
    EXPECT_EQ(error({"--vcpus", "256"}), "vcpus: 256 is too many (at most 255)");
    EXPECT_EQ(error({"--vcpus", "99999999999999999999999"}),
              "vcpus: 99999999999999999999999 is too many (at most 255)");
}

TEST_F(ConfigCli, VcpusNotANumber) {
    EXPECT_EQ(error({"--vcpus", "two"}), "vcpus: \"two\" is not a whole number");
    EXPECT_EQ(error({"--vcpus", "-1"}), "vcpus: \"-1\" is not a whole number");
    EXPECT_EQ(error({"--vcpus", "2.5"}), "vcpus: \"2.5\" is not a whole number");
}

TEST_F(ConfigCli, BadConsole) {
    EXPECT_EQ(error({"--console", "tty"}), "console: \"tty\" is not one of stdio, none, file:PATH");
    EXPECT_EQ(error({"--console", "file:"}), "console: file: needs a path (file:PATH)");
}

TEST_F(ConfigCli, BadOnReboot) {
    EXPECT_EQ(error({"--on-reboot", "halt"}), "on-reboot: \"halt\" is not one of restart, exit");
}

TEST_F(ConfigCli, TimeDilationDefaultsToRealTimeAndRefusesBadValues) {
    EXPECT_EQ(run({}).time_dilation, 1u);
    EXPECT_EQ(run({"--time-dilation", "1000"}).time_dilation, 1000u);
    EXPECT_EQ(error({"--time-dilation", "0"}), "time-dilation: 0 is out of range (1 to 1000)");
    EXPECT_EQ(error({"--time-dilation", "1001"}),
              "time-dilation: 1001 is out of range (1 to 1000)");
    EXPECT_EQ(error({"--time-dilation", "2.5"}), "time-dilation: \"2.5\" is not a whole number");
    EXPECT_EQ(error({"--time-dilation", "-3"}), "time-dilation: \"-3\" is not a whole number");
}

TEST_F(ConfigCli, BadLogLevel) {
    EXPECT_EQ(error({"--log-level", "loud"}),
              "log-level: \"loud\" is not one of error, warning, info, debug");
}

TEST_F(ConfigCli, BadStats) {
    EXPECT_EQ(error({"--stats=maybe"}), "stats: \"maybe\" is not yes or no");
}

TEST_F(ConfigCli, MissingKernelKey) {
    EXPECT_EQ(error({"--memory", "1G"}, false),
              "kernel: missing (give --kernel PATH, or kernel = PATH in the config file)");
}

TEST_F(ConfigCli, ValueErrorsComeBeforeMissingKernel) {
    EXPECT_EQ(error({"--memory", "12X"}, false),
              "memory: \"12X\" is not a size (use e.g. 512M or 2G)");
}

TEST_F(ConfigCli, KernelFileMissing) {
    EXPECT_EQ(error({"--kernel", "/nonexistent/vmlinuz"}, false),
              "kernel: /nonexistent/vmlinuz: No such file or directory");
}

TEST_F(ConfigCli, KernelNotARegularFile) {
    EXPECT_EQ(error({"--kernel", dir_}, false), "kernel: " + dir_ + ": not a regular file");
}

TEST_F(ConfigCli, KernelFifoRefusedWithoutBlocking) {
    std::string fifo = dir_ + "/fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_EQ(error({"--kernel", fifo}, false), "kernel: " + fifo + ": not a regular file");
}

TEST_F(ConfigCli, KernelUnreadable) {
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    ASSERT_EQ(::chmod(kernel_.c_str(), 0), 0);
    const std::string want = "kernel: " + kernel_ + ": Permission denied";
    if (::geteuid() != 0) {
        EXPECT_EQ(error({"--kernel", kernel_}, false), want);
        return;
    }
    // root reads any file: check as an ordinary user, in a child process.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
            ::_exit(3);
        Result<ParseOutcome> r = parse({"--kernel", kernel_});
        ::_exit(!r.ok() && r.error().message == want ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 3: could not drop root";
}

TEST_F(ConfigCli, InitrdFileMissing) {
    EXPECT_EQ(error({"--initrd", dir_ + "/nope.img"}),
              "initrd: " + dir_ + "/nope.img: No such file or directory");
}

TEST_F(ConfigCli, ConfigFileMissing) {
    EXPECT_EQ(error({"--config", "/nonexistent.conf"}),
              "config: /nonexistent.conf: No such file or directory");
}

}  // namespace
}  // namespace kv::config
