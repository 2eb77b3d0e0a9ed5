// i8042 reset paths, the port sink and the port window.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "vmm/devices/device_state.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/port_sink.h"
#include "vmm/devices/port_window.h"

namespace kv {
namespace {

uint8_t inb(Device& d, uint64_t off) {
    uint8_t b = 0xAA;
    d.read(off, std::span<uint8_t>(&b, 1));
    return b;
}
void outb(Device& d, uint64_t off, uint8_t v) {
    d.write(off, std::span<const uint8_t>(&v, 1));
}

TEST(I8042, StatusIsEmptyAnd0xFEResets) {
    int resets = 0;
    I8042 kbd([&] { ++resets; });
    // Linux's kb_wait() polls until input-buffer-full (bit 1) is clear.
    EXPECT_EQ(inb(kbd, I8042::kCommandOffset), 0);
    EXPECT_EQ(inb(kbd, I8042::kDataOffset), 0);
    outb(kbd, I8042::kCommandOffset, 0xAA);  // self test: ignored
    EXPECT_EQ(resets, 0);
    outb(kbd, I8042::kCommandOffset, 0xFE);
    EXPECT_EQ(resets, 1);
}

TEST(I8042, OutputPortWriteWithResetBitClearResets) {
    int resets = 0;
    I8042 kbd([&] { ++resets; });
    outb(kbd, I8042::kCommandOffset, 0xD1);
    outb(kbd, I8042::kDataOffset, 0xDF);  // A20 on, reset line not asserted
    EXPECT_EQ(resets, 0);
    outb(kbd, I8042::kCommandOffset, 0xD1);
    outb(kbd, I8042::kDataOffset, 0xDE);
    EXPECT_EQ(resets, 1);
    outb(kbd, I8042::kDataOffset, 0x00);  // data without the command: nothing
    EXPECT_EQ(resets, 1);
}

TEST(I8042, WindowsMapPortsToLogicalOffsets) {
    int resets = 0;
    auto kbd = std::make_shared<I8042>([&] { ++resets; });
    Bus bus;
    ASSERT_TRUE(
        bus.insert(0x60, 1, std::make_shared<PortWindow>(kbd, I8042::kDataOffset), "kbd").ok());
    ASSERT_TRUE(
        bus.insert(0x64, 1, std::make_shared<PortWindow>(kbd, I8042::kCommandOffset), "kbd-cmd")
            .ok());
    const uint8_t fe = 0xFE;
    bus.write(0x60, std::span<const uint8_t>(&fe, 1));
    EXPECT_EQ(resets, 0);
    bus.write(0x64, std::span<const uint8_t>(&fe, 1));
    EXPECT_EQ(resets, 1);
}

TEST(I8042, RestoreKeepsAPendingOutputPortWrite) {
    I8042 kbd([] {});
    outb(kbd, I8042::kCommandOffset, 0xD1);  // saved between the command and its data
    StateSaver s;
    kbd.save_state(s);
    const StateJson j = s.take();
    int resets = 0;
    I8042 kbd2([&] { ++resets; });
    StateLoader l(j, "devices.i8042");
    const Status st = kbd2.restore_state(l);
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_EQ(inb(kbd2, I8042::kCommandOffset), 0);
    outb(kbd2, I8042::kDataOffset, 0xDE);  // the data byte completes the restored command
    EXPECT_EQ(resets, 1);
    // And a state saved with no command pending restores as such.
    StateSaver s2;
    kbd2.save_state(s2);
    I8042 kbd3([&] { ++resets; });
    const StateJson j2 = s2.take();  // the loader keeps a reference
    StateLoader l3(j2, "devices.i8042");
    ASSERT_TRUE(kbd3.restore_state(l3));
    outb(kbd3, I8042::kDataOffset, 0xDE);
    EXPECT_EQ(resets, 1);
}

TEST(I8042, RestoreRefusesADamagedStateNamingTheField) {
    I8042 kbd([] {});
    StateSaver s;
    kbd.save_state(s);
    const StateJson j = s.take();
    auto refusal = [](const StateJson& bad) -> std::string {
        I8042 k([] {});
        StateLoader l(bad, "devices.i8042");
        const Status st = k.restore_state(l);
        return st ? "accepted" : st.error().message;
    };
    StateJson bad = j;
    bad["pending_command"] = 0xAA;  // self test: takes no data byte
    EXPECT_EQ(refusal(bad),
              "devices.i8042.pending_command: 170 is not a command that waits for data (0 or "
              "0xD1)");
    bad.erase("pending_command");
    EXPECT_EQ(refusal(bad), "devices.i8042.pending_command: missing");
    EXPECT_EQ(refusal(j), "accepted");
}

TEST(PortSink, AcceptsWritesAndReadsTheFixedValue) {
    PortSink post;
    outb(post, 0, 0x42);
    EXPECT_EQ(post.last_written(), 0x42);
    uint8_t w[2] = {0, 0};
    post.read(0, std::span<uint8_t>(w, 2));
    EXPECT_EQ(w[0], 0xFF);
    EXPECT_EQ(w[1], 0xFF);
    PortSink zero(0x00);
    EXPECT_EQ(inb(zero, 0), 0x00);
}

}  // namespace
}  // namespace kv
