// userfaultfd behaviour the coherence engine relies on (memory/uffd.h), on this kernel.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "base/mapping.h"
#include "memory/guest_memory.h"
#include "memory/uffd.h"

namespace kv {
namespace {

struct Fixture {
    Userfaultfd uffd;
    Mapping map;
};

Fixture setup(size_t pages) {
    auto u = Userfaultfd::open();
    EXPECT_TRUE(u.ok()) << (u.ok() ? "" : u.error().message);
    auto m = Mapping::anonymous(pages * kPageSize);
    EXPECT_TRUE(m.ok());
    EXPECT_EQ(::madvise(m->data(), m->size(), MADV_NOHUGEPAGE), 0);
    EXPECT_TRUE(u->register_missing_wp(m->data(), m->size()).ok());
    return {std::move(u).value(), std::move(m).value()};
}

// Waits (bounded) for one event on the uffd.
bool next_event(Userfaultfd& u, uffd_msg& out, int timeout_ms) {
    pollfd p{u.fd(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return false;
    auto n = u.read_events(&out, 1);
    return n.ok() && *n == 1;
}

TEST(MemUffd, MissingFaultResolvedByCopy) {
    auto f = setup(1);
    auto* p = reinterpret_cast<volatile uint64_t*>(f.map.data());
    auto reader = std::async(std::launch::async, [&] { return *p; });
    uffd_msg m{};
    ASSERT_TRUE(next_event(f.uffd, m, 5000));
    EXPECT_EQ(m.event, UFFD_EVENT_PAGEFAULT);
    EXPECT_EQ(m.arg.pagefault.address, reinterpret_cast<uint64_t>(f.map.data()));
    EXPECT_FALSE(m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
    std::vector<uint64_t> src(kPageSize / 8, 0);
    src[0] = 42;
    ASSERT_TRUE(f.uffd.copy(f.map.data(), src.data(), kPageSize, true).ok());
    ASSERT_EQ(reader.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    EXPECT_EQ(reader.get(), 42u);
}

TEST(MemUffd, WriteToPageCopiedWithModeWpRaisesWpFault) {
    auto f = setup(1);
    std::vector<uint8_t> zeros(kPageSize, 0);
    ASSERT_TRUE(f.uffd.copy(f.map.data(), zeros.data(), kPageSize, true).ok());
    auto* p = reinterpret_cast<volatile uint64_t*>(f.map.data());
    auto writer = std::async(std::launch::async, [&] { *p = 7; });
    uffd_msg m{};
    ASSERT_TRUE(next_event(f.uffd, m, 5000));
    EXPECT_TRUE(m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
    EXPECT_NE(writer.wait_for(std::chrono::milliseconds(0)), std::future_status::ready);
    ASSERT_TRUE(f.uffd.writeprotect(f.map.data(), kPageSize, false).ok());  // wakes
    ASSERT_EQ(writer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    EXPECT_EQ(*p, 7u);
}

// Why the engine never installs zeros with UFFDIO_ZEROPAGE: the shared zero page gets no
// uffd-wp bit (the ioctl has no WP mode), so a write to it is resolved by the kernel's
// copy-on-write without any WP fault, behind the protocol's back.
TEST(MemUffd, ZeroPageInstallIsNotWriteProtected) {
    auto f = setup(1);
    ASSERT_TRUE(f.uffd.zeropage(f.map.data(), kPageSize).ok());
    auto* p = reinterpret_cast<volatile uint64_t*>(f.map.data());
    auto writer = std::async(std::launch::async, [&] { *p = 9; });
    // If a WP fault were raised the writer would block until we resolved it.
    ASSERT_EQ(writer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    uffd_msg m{};
    EXPECT_FALSE(next_event(f.uffd, m, 0));
    EXPECT_EQ(*p, 9u);
}

TEST(MemUffd, DontNeedMakesTheNextAccessMissAgain) {
    auto f = setup(1);
    std::vector<uint64_t> src(kPageSize / 8, 5);
    ASSERT_TRUE(f.uffd.copy(f.map.data(), src.data(), kPageSize, false).ok());
    ASSERT_EQ(::madvise(f.map.data(), kPageSize, MADV_DONTNEED), 0);
    auto* p = reinterpret_cast<volatile uint64_t*>(f.map.data());
    auto reader = std::async(std::launch::async, [&] { return *p; });
    uffd_msg m{};
    ASSERT_TRUE(next_event(f.uffd, m, 5000));
    EXPECT_FALSE(m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
    src[0] = 6;
    ASSERT_TRUE(f.uffd.copy(f.map.data(), src.data(), kPageSize, false).ok());
    ASSERT_EQ(reader.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    EXPECT_EQ(reader.get(), 6u);
}

TEST(MemUffd, CopyOverAPresentPageIsEexist) {
    auto f = setup(1);
    std::vector<uint8_t> src(kPageSize, 1);
    ASSERT_TRUE(f.uffd.copy(f.map.data(), src.data(), kPageSize, false).ok());
    auto st = f.uffd.copy(f.map.data(), src.data(), kPageSize, false);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("File exists"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace kv
