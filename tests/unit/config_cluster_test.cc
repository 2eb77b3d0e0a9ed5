// Cluster configs: [node.K] and [cluster] sections, --node and --local, every rule and its
// FILE:LINE error, the key file checks, the vCPU/RAM layout helpers, the config digest,
// transport options, and examples/cluster-{2,3}.conf.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/test_support.h"
#include "vmm/config/cluster.h"
#include "vmm/config/config.h"

namespace kv::config {
namespace {

class ConfigCluster : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kv-config-cluster-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        kernel_ = write("bzImage", "kernel");
        key_ = write("cluster.key", "0123456789abcdef0123456789abcdef", 0600);
        conf_ = dir_ + "/cluster.conf";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& text, mode_t mode = 0644) {
        std::string path = dir_ + "/" + name;
        std::ofstream(path) << text;
        ::chmod(path.c_str(), mode);
        return path;
    }

    static Result<ParseOutcome> parse(std::vector<std::string> args) {
        return kv::testing::parse_args(std::move(args));
    }
    Result<ParseOutcome> parse_file(const std::string& text, std::vector<std::string> extra) {
        write("cluster.conf", text);
        extra.insert(extra.begin(), {"--config", conf_});
        return parse(extra);
    }
    VmConfig run(const std::string& text, std::vector<std::string> extra = {"--node", "0"}) {
        Result<ParseOutcome> r = parse_file(text, extra);
        EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
        return r.ok() ? r->config : VmConfig{};
    }
    std::string error(const std::string& text, std::vector<std::string> extra = {"--node", "0"}) {
        Result<ParseOutcome> r = parse_file(text, extra);
        EXPECT_FALSE(r.ok());
        return r.ok() ? "" : r.error().message;
    }
    std::string at(int line) const { return conf_ + ":" + std::to_string(line) + ": "; }

    // Lines 1-3: guest and cluster; then each node is 5 lines: header and four keys.
    std::string head() const {
        return "kernel = " + kernel_ + "\n[cluster]\nkey-file = " + key_ + "\n";
    }
    static std::string node(int k, const std::string& addr, int port, int vcpus,
                            const std::string& mem) {
        return "[node." + std::to_string(k) + "]\naddress = " + addr +
               "\nport = " + std::to_string(port) + "\nvcpus = " + std::to_string(vcpus) +
               "\nmemory = " + mem + "\n";
    }
    std::string three() const {
        return head() + node(0, "10.0.0.1", 7000, 2, "1G") + node(1, "10.0.0.2", 7005, 1, "512M") +
               node(2, "host-c.example", 7001, 3, "256M");
    }

    std::string dir_, kernel_, key_, conf_;
};

TEST_F(ConfigCluster, NodesParsedAndTotalsSummed) {
    VmConfig c = run(three(), {"--node", "2"});
    const Cluster& cl = c.cluster;
    ASSERT_TRUE(cl.enabled());
    ASSERT_EQ(cl.nodes.size(), 3u);
    EXPECT_EQ(cl.self, 2u);
    EXPECT_FALSE(cl.local);
    EXPECT_EQ(cl.nodes[2].address, "host-c.example");
    EXPECT_EQ(cl.nodes[2].port, 7001);
    EXPECT_EQ(cl.nodes[1].vcpus, 1u);
    EXPECT_EQ(cl.nodes[0].memory, 1ull << 30);
    EXPECT_EQ(cl.nodes[1].origin.line, 9);
    EXPECT_EQ(cl.total_vcpus(), 6u);
    EXPECT_EQ(cl.total_memory(), (1ull << 30) + (768ull << 20));
    EXPECT_EQ(c.vcpus, 6u);
    EXPECT_EQ(c.memory, cl.total_memory());
    EXPECT_EQ(cl.key_file, key_);
    EXPECT_EQ(std::string(cl.key.begin(), cl.key.end()), "0123456789abcdef0123456789abcdef");
    EXPECT_EQ(cl.connect_timeout, std::chrono::seconds(30));
    EXPECT_EQ(cl.transport, "tcp");
    EXPECT_EQ(cl.self_node().id, 2u);
    EXPECT_EQ(c.where("node.1.port"), at(11));
}

TEST_F(ConfigCluster, LayoutHelpers) {
    VmConfig c = run(three());
    const Cluster& cl = c.cluster;
    std::vector<uint32_t> owner;
    for (unsigned i = 0; i < cl.total_vcpus(); ++i) owner.push_back(cl.vcpu_node(i));
    EXPECT_EQ(owner, (std::vector<uint32_t>{0, 0, 1, 2, 2, 2}));
    EXPECT_EQ(cl.node_vcpus(1).first, 2u);
    EXPECT_EQ(cl.node_vcpus(2).first, 3u);
    EXPECT_EQ(cl.node_vcpus(2).count, 3u);
    EXPECT_EQ(cl.node_memory_range(0).offset, 0u);
    EXPECT_EQ(cl.node_memory_range(0).size, 1ull << 30);
    EXPECT_EQ(cl.node_memory_range(1).offset, 1ull << 30);
    EXPECT_EQ(cl.node_memory_range(2).offset, (1ull << 30) + (512ull << 20));
    EXPECT_EQ(cl.node_memory_range(2).size, 256ull << 20);
}

TEST_F(ConfigCluster, SingleNodeConfigUnchanged) {
    Result<ParseOutcome> r = parse_file("kernel = " + kernel_ + "\nvcpus = 3\nmemory = 1G\n", {});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_FALSE(r->config.cluster.enabled());
    EXPECT_EQ(r->config.vcpus, 3u);
}

TEST_F(ConfigCluster, NodeDefaultsSectionsInAnyOrderAndMemoryRoundedTo2MiB) {
    VmConfig c = run(head() +
                     "[node.1]\naddress = ::1\nport = 7001\n[node.0]\naddress = "
                     "127.0.0.1\nport = 7000\nmemory = 100M\n[guest]\ncmdline = x\n");
    ASSERT_EQ(c.cluster.nodes.size(), 2u);
    EXPECT_EQ(c.cluster.nodes[0].port, 7000);
    EXPECT_EQ(c.cluster.nodes[0].memory, 100ull << 20);
    EXPECT_EQ(c.cluster.nodes[1].address, "::1");
    EXPECT_EQ(c.cluster.nodes[1].vcpus, 1u);
    EXPECT_EQ(c.cluster.nodes[1].memory, 512ull << 20);
    EXPECT_EQ(c.cmdline, "x");
    c = run(head() + node(0, "a", 1, 1, "65M") + node(1, "b", 1, 1, "64M"));
    EXPECT_EQ(c.cluster.nodes[0].memory, 66ull << 20);
}

TEST_F(ConfigCluster, ClusterKeys) {
    VmConfig c = run("kernel = " + kernel_ +
                     "\n[cluster]\nkey-file = cluster.key\nconnect-timeout = 500ms\ntransport = "
                     "tcp\n" +
                     node(0, "a", 1, 1, "64M"));
    EXPECT_EQ(c.cluster.key_file, key_);  // relative to the config file
    EXPECT_EQ(c.cluster.connect_timeout, std::chrono::milliseconds(500));
    EXPECT_EQ(c.where("connect-timeout"), at(4));
    for (auto [text, ms] :
         {std::pair{"2m", 120000}, std::pair{"30s", 30000}, std::pair{"1ms", 1}}) {
        c = run(head() + "connect-timeout = " + text + "\n" + node(0, "a", 1, 1, "64M"));
        EXPECT_EQ(c.cluster.connect_timeout.count(), ms) << text;
    }
    EXPECT_EQ(c.cluster.page_hold.count(), 0);  // no hold window unless asked
    for (auto [text, us] : {std::pair{"0", 0}, std::pair{"250us", 250}, std::pair{"2ms", 2000},
                            std::pair{"100ms", 100000}}) {
        c = run(head() + "page-hold = " + text + "\n" + node(0, "a", 1, 1, "64M"));
        EXPECT_EQ(c.cluster.page_hold.count(), us) << text;
    }
    EXPECT_EQ(c.cluster.heartbeat, std::chrono::seconds(4));  // loss seen within 5 s
    for (auto [text, ms] : {std::pair{"off", 0}, std::pair{"1s", 1000}, std::pair{"1500ms", 1500},
                            std::pair{"10m", 600000}}) {
        c = run(head() + "heartbeat = " + text + "\n" + node(0, "a", 1, 1, "64M"));
        EXPECT_EQ(c.cluster.heartbeat.count(), ms) << text;
        EXPECT_EQ(config::transport_options(c, {}, nullptr).heartbeat.count(), ms) << text;
    }
}

TEST_F(ConfigCluster, BadClusterValues) {
    EXPECT_EQ(error(head() + "connect-timeout = 30\n" + node(0, "a", 1, 1, "64M")),
              at(4) +
                  "connect-timeout: \"30\" is not a duration (use e.g. 30s, 500ms or 2m) (a "
                  "unit is required)");
    EXPECT_EQ(error(head() + "connect-timeout = 0s\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "connect-timeout: 0s is too short (at least 1ms)");
    EXPECT_EQ(error(head() + "connect-timeout = 61m\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "connect-timeout: 61m is too long (at most 60m)");
    EXPECT_EQ(error(head() + "page-hold = 500\n" + node(0, "a", 1, 1, "64M")),
              at(4) +
                  "page-hold: \"500\" is not a hold time (use e.g. 0, 200us or 2ms) (a unit "
                  "is required)");
    EXPECT_EQ(error(head() + "page-hold = 2s\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "page-hold: \"2s\" is not a hold time (use e.g. 0, 200us or 2ms)");
    EXPECT_EQ(error(head() + "page-hold = 101ms\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "page-hold: 101ms is too long (at most 100ms)");
    EXPECT_EQ(error(head() + "heartbeat = 999ms\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "heartbeat: 999ms is too short (at least 1s, or off)");
    EXPECT_EQ(error(head() + "heartbeat = 11m\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "heartbeat: 11m is too long (at most 10m, or off)");
    EXPECT_EQ(error(head() + "heartbeat = 0\n" + node(0, "a", 1, 1, "64M")),
              at(4) +
                  "heartbeat: \"0\" is not a duration (use e.g. 30s, 500ms or 2m) (a unit is "
                  "required)");
    EXPECT_EQ(error(head() + "transport = rdma\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "transport: \"rdma\" is not one of tcp");
    EXPECT_EQ(error(head() + "timeout = 1s\n" + node(0, "a", 1, 1, "64M")),
              at(4) +
                  "unknown key \"timeout\" in [cluster] (known: key-file, connect-timeout, "
                  "heartbeat, transport, page-hold)");
    EXPECT_EQ(error(head() + "key-file = other\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "key-file: given twice (first at line 3)");
    EXPECT_EQ(error(head() + "[cluster]\n" + node(0, "a", 1, 1, "64M")),
              at(4) + "[cluster] given twice (first at line 2)");
}

TEST_F(ConfigCluster, ClusterWithoutNodes) {
    EXPECT_EQ(error(head(), {}), at(2) +
                                     "[cluster] without [node.K] sections (a cluster needs "
                                     "its nodes)");
}

TEST_F(ConfigCluster, NodeNumbering) {
    EXPECT_EQ(error(head() + node(0, "a", 1, 1, "64M") + node(2, "b", 1, 1, "64M")),
              at(9) + "[node.2]: node 1 is missing (nodes are numbered 0, 1, 2, ... without gaps)");
    EXPECT_EQ(error(head() + node(1, "a", 1, 1, "64M")),
              at(4) + "[node.1]: node 0 is missing (nodes are numbered 0, 1, 2, ... without gaps)");
    EXPECT_EQ(error(head() + node(0, "a", 1, 1, "64M") + node(0, "b", 2, 1, "64M")),
              at(9) + "[node.0] given twice (first at line 4)");
    for (const char* bad : {"[node.x]", "[node.01]", "[node.-1]", "[node.255]", "[node.1.2]"}) {
        EXPECT_EQ(error(head() + bad + "\n"),
                  at(4) + bad + ": node numbers are whole numbers 0 to 254 (as in [node.0])")
            << bad;
    }
}

TEST_F(ConfigCluster, NodeKeysRequiredAndChecked) {
    EXPECT_EQ(error(head() + "[node.0]\nport = 1\n"),
              at(4) + "[node.0] address: missing (give address = HOST in this section)");
    EXPECT_EQ(error(head() + "[node.0]\naddress = a\n"),
              at(4) + "[node.0] port: missing (give port = N in this section)");
    EXPECT_EQ(error(head() + node(0, "a", 0, 1, "64M")),
              at(6) + "[node.0] port: \"0\" is not a port number (1 to 65535)");
    EXPECT_EQ(error(head() + node(0, "a", 65536, 1, "64M")),
              at(6) + "[node.0] port: \"65536\" is not a port number (1 to 65535)");
    EXPECT_EQ(error(head() + node(0, "a", 1, 0, "64M")),
              at(7) + "[node.0] vcpus: 0 is too few (at least 1)");
    EXPECT_EQ(error(head() + node(0, "a", 1, 1, "12X")),
              at(8) + "[node.0] memory: \"12X\" is not a size (use e.g. 512M or 2G)");
    EXPECT_EQ(error(head() + node(0, "a", 1, 1, "32M")),
              at(8) + "[node.0] memory: 32M is too small (at least 64M)");
    for (const char* bad : {"bad_host", "-a", "a-", "a..b", "10.0.0.256", "[::1]", "a b"}) {
        EXPECT_EQ(error(head() + node(0, bad, 1, 1, "64M")),
                  at(5) + "[node.0] address: \"" + bad +
                      "\" is not an IPv4 or IPv6 address or a host name")
            << bad;
    }
    EXPECT_EQ(error(head() + "[node.0]\naddress = a\nport = 1\ncpus = 2\n"),
              at(7) + "unknown key \"cpus\" in [node.0] (known: address, port, vcpus, memory)");
    EXPECT_EQ(error(head() + "[node.0]\naddress = a\nport = 1\nport = 2\n"),
              at(7) + "[node.0] port: given twice (first at line 6)");
    EXPECT_EQ(error(head() + "[node.0]\naddress = a\nport = 1\nkernel = x\n"),
              at(7) + "unknown key \"kernel\" in [node.0] (known: address, port, vcpus, memory)");
}

TEST_F(ConfigCluster, DuplicateAddressAndPort) {
    EXPECT_EQ(error(head() + node(0, "a", 7000, 1, "64M") + node(1, "a", 7000, 1, "64M")),
              at(11) + "[node.1] port: a port 7000 is node 0's too");
}

TEST_F(ConfigCluster, TopLevelVcpusAndMemoryRefused) {
    EXPECT_EQ(error("vcpus = 2\n" + head() + node(0, "a", 1, 1, "64M")),
              at(1) + "vcpus: set per node in [node.K] sections");
    EXPECT_EQ(error("[guest]\nmemory = 1G\n" + head() + node(0, "a", 1, 1, "64M")),
              at(2) + "memory: set per node in [node.K] sections");
    EXPECT_EQ(error(head() + node(0, "a", 1, 1, "64M"), {"--node", "0", "--vcpus", "4"}),
              "vcpus: set per node in [node.K] sections of " + conf_);
}

TEST_F(ConfigCluster, TooManyVcpusInAll) {
    EXPECT_EQ(error(head() + node(0, "a", 1, 200, "64M") + node(1, "b", 1, 55, "64M") +
                    node(2, "c", 1, 1, "64M")),
              at(14) + "[node.2] vcpus: the nodes have 256 vCPUs in all, too many (at most 255)");
    EXPECT_EQ(run(head() + node(0, "a", 1, 200, "64M") + node(1, "b", 1, 55, "64M")).vcpus, 255u);
}

TEST_F(ConfigCluster, NodeOption) {
    EXPECT_EQ(error(three(), {}), "node: missing (give --node K to run node K of " + conf_ +
                                      ", or --local to run all 3 nodes on this host)");
    EXPECT_EQ(error(three(), {"--node", "3"}),
              "node: 3 is out of range (" + conf_ + " has nodes 0 to 2)");
    EXPECT_EQ(error(three(), {"--node", "x"}), "node: \"x\" is not a node number (0 to 254)");
    EXPECT_EQ(error(three(), {"--node", "1", "--local"}), "local: cannot be combined with --node");
    EXPECT_EQ(error("kernel = " + kernel_ + "\n", {"--node", "0"}),
              "node: " + conf_ + " has no [node.K] sections");
    EXPECT_EQ(error("kernel = " + kernel_ + "\n", {"--local"}),
              "local: " + conf_ + " has no [node.K] sections");
    EXPECT_EQ(parse({"--kernel", kernel_, "--node", "0"}).error().message,
              "node: needs a cluster config (--config FILE with [node.K] sections)");
    EXPECT_EQ(error("node = 1\n" + three()), at(1) + "node: only allowed on the command line");
}

TEST_F(ConfigCluster, LocalRewritesAddressesToLoopback) {
    VmConfig c = run(three(), {"--local"});
    EXPECT_TRUE(c.cluster.local);
    EXPECT_EQ(c.cluster.self, 0u);
    for (const NodeSpec& n : c.cluster.nodes) EXPECT_EQ(n.address, "127.0.0.1");
    // Two hosts may share a port; one host cannot.
    std::string same =
        head() + node(0, "10.0.0.1", 7000, 1, "64M") + node(1, "10.0.0.2", 7000, 1, "64M");
    EXPECT_TRUE(parse_file(same, {"--node", "1"}).ok());
    EXPECT_EQ(error(same, {"--local"}),
              at(11) +
                  "[node.1] port: 127.0.0.1 port 7000 is node 0's too (--local runs every "
                  "node on 127.0.0.1: give each node its own port)");
}

TEST_F(ConfigCluster, KeyFileRules) {
    std::string nodes = node(0, "a", 1, 1, "64M");
    std::string kernel = "kernel = " + kernel_ + "\n";
    EXPECT_EQ(error(kernel + nodes),
              "key-file: missing (a cluster needs [cluster] key-file = PATH; make a key with: "
              "head -c 32 /dev/urandom > PATH; chmod 600 PATH)");
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = /nonexistent/key\n" + nodes),
              at(3) + "key-file: /nonexistent/key: No such file or directory");
    std::string open = write("open.key", "0123456789abcdef", 0644);
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = " + open + "\n" + nodes),
              at(3) + "key-file: " + open + " is readable by others (mode 0644; chmod 600 it)");
    std::string group = write("group.key", "0123456789abcdef", 0640);
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = " + group + "\n" + nodes),
              at(3) + "key-file: " + group + " is readable by others (mode 0640; chmod 600 it)");
    std::string writable = write("w.key", "0123456789abcdef", 0620);
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = " + writable + "\n" + nodes),
              at(3) + "key-file: " + writable + " is writable by others (mode 0620; chmod 600 it)");
    std::string shortkey = write("short.key", "012345678abcdef", 0600);
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = " + shortkey + "\n" + nodes),
              at(3) + "key-file: " + shortkey +
                  " holds 15 bytes, too short for a key (at least 16; make one with: head -c 32 "
                  "/dev/urandom > " +
                  shortkey + ")");
    std::string big = write("big.key", std::string(4097, 'k'), 0600);
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = " + big + "\n" + nodes),
              at(3) + "key-file: " + big + " is larger than 4096 bytes");
    EXPECT_EQ(error(kernel + "[cluster]\nkey-file = " + dir_ + "\n" + nodes),
              at(3) + "key-file: " + dir_ + ": not a regular file");
    std::string exact = write("exact.key", "0123456789abcdef", 0400);
    EXPECT_EQ(run(kernel + "[cluster]\nkey-file = " + exact + "\n" + nodes).cluster.key.size(),
              16u);
}

TEST_F(ConfigCluster, ValueErrorsComeBeforeTheKeyFile) {
    EXPECT_EQ(error("kernel = " + kernel_ + "\n[cluster]\nkey-file = /nonexistent\n" +
                    node(0, "a", 0, 1, "64M")),
              at(6) + "[node.0] port: \"0\" is not a port number (1 to 65535)");
}

TEST_F(ConfigCluster, DigestCoversWhatMustMatchAndNothingElse) {
    const std::string base = three();
    VmConfig c = run(base, {"--node", "0"});
    Result<ConfigDigest> d = config_digest(c);
    ASSERT_TRUE(d.ok()) << d.error().message;
    Result<std::string> text = digest_text(c);
    ASSERT_TRUE(text.ok());
    EXPECT_NE(text->find("node 2 address host-c.example port 7001 vcpus 3 memory 268435456"),
              std::string::npos)
        << *text;
    EXPECT_NE(text->find("kernel sha256="), std::string::npos);
    EXPECT_NE(text->find("initrd none"), std::string::npos);

    auto digest_of = [&](const std::string& conf, std::vector<std::string> extra) {
        Result<ConfigDigest> r = config_digest(run(conf, extra));
        EXPECT_TRUE(r.ok());
        return r.ok() ? *r : ConfigDigest{};
    };
    // Not in the digest: which node, console, log level, stats, on-reboot, timeout, key path,
    // the kernel's path.
    EXPECT_EQ(digest_of(base, {"--node", "2"}), *d);
    EXPECT_EQ(digest_of(base, {"--node", "1", "--console", "none", "--log-level", "debug",
                               "--stats", "--on-reboot", "exit"}),
              *d);
    std::string copy = dir_ + "/copy/bzImage";
    std::filesystem::create_directories(dir_ + "/copy");
    std::filesystem::copy_file(kernel_, copy);
    EXPECT_EQ(digest_of(base, {"--node", "0", "--kernel", copy}), *d);
    std::string key2 = write("other.key", "fedcba9876543210", 0600);
    std::string moved = base;
    moved.replace(moved.find(key_), key_.size(), key2);
    EXPECT_EQ(digest_of(moved + "", {"--node", "0"}), *d);

    // In it: kernel contents, initrd, cmdline, every node's layout and address.
    std::string other_kernel = write("bzImage2", "kernel2");
    EXPECT_NE(digest_of(base, {"--node", "0", "--kernel", other_kernel}), *d);
    std::string initrd = write("initrd.img", "initrd");
    EXPECT_NE(digest_of(base, {"--node", "0", "--initrd", initrd}), *d);
    EXPECT_NE(digest_of(base, {"--node", "0", "--cmdline", "quiet"}), *d);
    EXPECT_NE(digest_of(base, {"--node", "0", "--time-dilation", "10"}), *d);
    for (auto [from, to] :
         {std::pair{"vcpus = 3", "vcpus = 2"}, std::pair{"memory = 256M", "memory = 258M"},
          std::pair{"7001", "7002"}, std::pair{"10.0.0.2", "10.0.0.3"}}) {
        std::string changed = base;
        changed.replace(changed.find(from), std::string(from).size(), to);
        EXPECT_NE(digest_of(changed, {"--node", "0"}), *d) << from;
    }
}

TEST_F(ConfigCluster, DigestErrorNamesAMissingKernel) {
    VmConfig c = run(three());
    std::filesystem::remove(kernel_);
    Result<ConfigDigest> d = config_digest(c);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error().message, "kernel: " + kernel_ + ": No such file or directory");
}

TEST_F(ConfigCluster, TransportOptions) {
    VmConfig c = run(head() + "connect-timeout = 2s\n" + node(0, "10.0.0.1", 7000, 1, "64M") +
                         node(1, "::1", 7001, 1, "64M"),
                     {"--node", "1"});
    ConfigDigest d;
    d.fill(3);
    TransportOptions o = transport_options(c, d, nullptr);
    EXPECT_EQ(o.self, 1u);
    ASSERT_EQ(o.nodes.size(), 2u);
    EXPECT_EQ(o.nodes[1].id, 1u);
    EXPECT_EQ(o.nodes[1].host, "::1");
    EXPECT_EQ(o.nodes[1].port, 7001);
    EXPECT_EQ(o.config_digest, d);
    EXPECT_EQ(o.connect_timeout, std::chrono::milliseconds(2000));
}

TEST_F(ConfigCluster, ExamplesParseWithLocalAndWithNode) {
    std::filesystem::path examples =
        std::filesystem::path(__FILE__).parent_path() / "../../examples";
    for (auto [name, nodes] : {std::pair{"cluster-2.conf", 2u}, std::pair{"cluster-3.conf", 3u}}) {
        std::filesystem::path example = examples / name;
        ASSERT_TRUE(std::filesystem::exists(example)) << example;
        // The examples name the lab's kernel and the demo's key: point them at local files.
        std::string text;
        {
            std::ifstream in(example);
            std::stringstream s;
            s << in.rdbuf();
            text = s.str();
        }
        for (auto [from, to] :
             {std::pair{std::string("key-file = /var/cache/kerrvisor/cluster.key"),
                        "key-file = " + key_}}) {
            size_t at = text.find(from);
            ASSERT_NE(at, std::string::npos) << name;
            text.replace(at, from.size(), to);
        }
        std::string local = write(name, text);
        for (std::vector<std::string> role :
             {std::vector<std::string>{"--local"}, std::vector<std::string>{"--node", "1"}}) {
            std::vector<std::string> args = {"--config", local,      "--kernel",
                                             kernel_,    "--initrd", ""};
            args.insert(args.end(), role.begin(), role.end());
            Result<ParseOutcome> r = parse(args);
            ASSERT_TRUE(r.ok()) << name << ": " << r.error().message;
            const Cluster& cl = r->config.cluster;
            EXPECT_EQ(cl.nodes.size(), nodes) << name;
            for (const NodeSpec& n : cl.nodes) EXPECT_EQ(n.address, "127.0.0.1") << name;
        }
    }
}

// [vcpu.N] migrate: Kerrighed's CAN_MIGRATE, yes by default; every mistake named with its
// line; not in the config digest (runtime policy of the I/O node).
TEST_F(ConfigCluster, VcpuSectionsSetTheMigrateCapability) {
    // three() is lines 1-18 and has 6 vCPUs.
    VmConfig c = run(three() + "[vcpu.1]\nmigrate = no\n[vcpu.5]\nmigrate = yes\n");
    EXPECT_TRUE(c.may_migrate(0));
    EXPECT_FALSE(c.may_migrate(1));
    EXPECT_TRUE(c.may_migrate(5));
    EXPECT_EQ(c.origin("vcpu.1.migrate").line, 20);
    EXPECT_TRUE(run(three()).vcpu_migrate.empty());

    EXPECT_EQ(error(three() + "[vcpu.1]\nmigrate = perhaps\n"),
              at(20) + "[vcpu.1] migrate: \"perhaps\" is not yes or no");
    EXPECT_EQ(error(three() + "[vcpu.1]\nspeed = 3\n"),
              at(20) + "unknown key \"speed\" in [vcpu.1] (known: migrate)");
    EXPECT_EQ(error(three() + "[vcpu.x]\nmigrate = no\n"),
              at(19) + "[vcpu.x]: vCPU numbers are whole numbers 0 to 254 (as in [vcpu.1])");
    EXPECT_EQ(error(three() + "[vcpu.2]\nmigrate = no\n[vcpu.2]\nmigrate = no\n"),
              at(21) + "[vcpu.2] given twice (first at line 19)");
    EXPECT_EQ(error(three() + "[vcpu.2]\nmigrate = no\nmigrate = yes\n"),
              at(21) + "[vcpu.2] migrate: given twice (first at line 20)");
    EXPECT_EQ(error(three() + "[vcpu.6]\nmigrate = no\n"),
              at(19) + "[vcpu.6]: the guest has 6 vCPU(s), numbered 0 to 5");

    Result<ConfigDigest> with = config_digest(run(three() + "[vcpu.1]\nmigrate = no\n"));
    Result<ConfigDigest> without = config_digest(run(three()));
    ASSERT_TRUE(with.ok() && without.ok());
    EXPECT_EQ(*with, *without);
}

}  // namespace
}  // namespace kv::config
