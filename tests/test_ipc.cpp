// ipc with real processes: shared memory (0600, unlinked after normal exit and after the creator
// is SIGKILLed), a counter updated by many processes under a lock with no lost update, a lock
// whose holder is SIGKILLed (the next acquirer gets owner_died, not a hang), lock timeouts.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <parx/barrier.hpp>
#include <parx/parx.hpp>
#include "ipc/fork_server.hpp"

#include <parx/shared_value.hpp>
#include "helper_parent.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// ---- targets
// -------------------------------------------------------------------------------------

void fill_segment(parx::SharedMemory seg, int value) {
  std::memset(seg.data(), value, seg.size());
}
void add_many(parx::SharedValue<long> counter, int times) {
  for (int i = 0; i < times; ++i) {
    std::lock_guard g(counter.get_lock());
    counter.ref() += 1;  // a read-modify-write: only correct under the lock
  }
}
void hold_lock_forever(parx::Lock lock, parx::SharedValue<int> holding) {
  lock.lock();
  holding.set(1);
  for (;;)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}
void squares(parx::SharedArray<double> a) {
  for (std::size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<double>(i * i);
}

void wait_then_mark(parx::Event go, parx::SharedValue<int> mark) {
  if (go.wait(std::chrono::seconds(10))) mark.set(1);
}
void limited_section(parx::Semaphore slots, parx::SharedValue<int> active,
                     parx::SharedValue<int> peak) {
  slots.acquire();
  {
    std::lock_guard g(active.get_lock());
    active.ref() += 1;
    std::lock_guard g2(peak.get_lock());
    if (active.ref() > peak.ref()) peak.ref() = active.ref();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::lock_guard g(active.get_lock());
    active.ref() -= 1;
  }
  slots.release();
}

void advance_stage(parx::Condition cond, parx::SharedValue<int> stage) {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  std::lock_guard g(cond.lock());
  stage.ref() = 2;
  cond.notify_all();
}
void hold_rlock_twice_forever(parx::RLock lock, parx::SharedValue<int> holding) {
  lock.lock();
  lock.lock();  // reentrant
  holding.set(1);
  for (;;)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}

void rounds_until_broken(parx::Barrier b, parx::SharedValue<int> broken) {
  try {
    for (int i = 0; i < 1000; ++i)
      b.wait(std::chrono::seconds(30));
  } catch (const parx::BrokenBarrier&) {
    std::lock_guard g(broken.get_lock());
    broken.ref() += 1;
  }
}
void one_round_then_sleep(parx::Barrier b) {
  b.wait();
  for (;;)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}

PARX_REMOTE(rounds_until_broken);
PARX_REMOTE(one_round_then_sleep);
PARX_REMOTE(advance_stage);
PARX_REMOTE(hold_rlock_twice_forever);
PARX_REMOTE(wait_then_mark);
PARX_REMOTE(limited_section);
PARX_REMOTE(fill_segment);
PARX_REMOTE(add_many);
PARX_REMOTE(hold_lock_forever);
PARX_REMOTE(squares);

namespace {

using namespace std::chrono_literals;

bool shm_exists(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

template <class P>
bool eventually(P pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TEST(SharedMemory, CreateAttachPermissionsAndUnlink) {
  std::string name;
  {
    auto seg = parx::SharedMemory::create(4096);
    name = seg.name();
    EXPECT_TRUE(seg.is_owner());
    EXPECT_EQ(seg.size(), 4096u);
    EXPECT_EQ(seg.data()[100], std::byte{0});  // zero-filled
    seg.data()[0] = std::byte{42};
    struct stat st {};
    ASSERT_EQ(stat(("/dev/shm/" + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);  // private to the user
    auto other = parx::SharedMemory::attach(name);
    EXPECT_FALSE(other.is_owner());
    EXPECT_EQ(other.data()[0], std::byte{42});
    EXPECT_THROW(parx::SharedMemory::create(16, name), parx::Error);  // the name is taken
  }
  EXPECT_FALSE(shm_exists(name));  // the creator unlinked it
  try {
    parx::SharedMemory::attach(name);
    FAIL();
  } catch (const parx::Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos);
  }
  EXPECT_THROW(parx::SharedMemory::create(16, "a/b"), parx::InvalidArgument);
  EXPECT_THROW(parx::SharedMemory::create(0), parx::InvalidArgument);
}

TEST(SharedMemory, AChildWritesTheParentReads) {
  auto seg = parx::SharedMemory::create(1 << 16);
  parx::Process p(fill_segment, seg, 7);
  p.start();
  p.join();
  ASSERT_EQ(p.exitcode(), 0);
  for (std::size_t i = 0; i < seg.size(); i += 997)
    ASSERT_EQ(seg.data()[i], std::byte{7});
}

TEST(SharedValue, ManyProcessesNoLostUpdates) {
  parx::SharedValue<long> counter(0);
  std::vector<parx::Process> ps;
  for (int i = 0; i < 8; ++i)
    ps.emplace_back(add_many, counter, 50'000);
  for (auto& p : ps)
    p.start();
  for (auto& p : ps) {
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_EQ(counter.get(), 400'000);
}

TEST(SharedArray, FilledByAChild) {
  parx::SharedArray<double> a(1000, -1.0);
  EXPECT_EQ(a.load(999), -1.0);
  parx::Process p(squares, a);
  p.start();
  p.join();
  EXPECT_EQ(a.load(30), 900.0);
  EXPECT_EQ(a[999], 998001.0);
  EXPECT_THROW(a.load(1000), parx::InvalidArgument);
  a.store(0, 5.0);
  EXPECT_EQ(a[0], 5.0);
}

TEST(Lock, HolderKilledNextAcquirerIsToldNotHung) {
  parx::Lock lock;
  parx::SharedValue<int> holding(0);
  parx::Process p(hold_lock_forever, lock, holding);
  p.start();
  ASSERT_TRUE(eventually([&] { return holding.get() == 1; }));
  EXPECT_EQ(lock.acquire(50ms), parx::LockStatus::timed_out);  // held by the child
  EXPECT_FALSE(lock.try_lock());
  p.kill();
  p.join();
  EXPECT_EQ(lock.acquire(5s), parx::LockStatus::owner_died);
  EXPECT_TRUE(lock.previous_owner_died());
  lock.unlock();
  EXPECT_EQ(lock.acquire(1s), parx::LockStatus::acquired);  // consistent again
  EXPECT_FALSE(lock.previous_owner_died());
  lock.unlock();
}

TEST(Lock, BetweenThreadsAndMisuse) {
  parx::Lock lock;
  long value = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) {
        std::lock_guard g(lock);
        ++value;
      }
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(value, 40'000);
#if !defined(__SANITIZE_THREAD__)  // TSan diagnoses these deliberate misuses itself
  EXPECT_THROW(lock.unlock(), parx::InvalidState);  // not held
  lock.lock();
  EXPECT_THROW(lock.lock(), parx::InvalidState);  // already held by this thread
  lock.unlock();
#endif
}

TEST(Event, WakesAProcessAndTimesOut) {
  parx::Event go;
  EXPECT_FALSE(go.is_set());
  EXPECT_FALSE(go.wait(30ms));
  parx::SharedValue<int> mark(0);
  parx::Process p(wait_then_mark, go, mark);
  p.start();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(mark.get(), 0);  // still waiting
  go.set();
  p.join();
  EXPECT_EQ(mark.get(), 1);
  EXPECT_TRUE(go.wait(0ms));
  go.clear();
  EXPECT_FALSE(go.is_set());
}

TEST(Semaphore, LimitsConcurrencyAcrossProcesses) {
  parx::Semaphore slots(2);
  parx::SharedValue<int> active(0), peak(0);
  std::vector<parx::Process> ps;
  for (int i = 0; i < 6; ++i)
    ps.emplace_back(limited_section, slots, active, peak);
  for (auto& p : ps)
    p.start();
  for (auto& p : ps) {
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_LE(peak.get(), 2);
  EXPECT_GE(peak.get(), 1);
  EXPECT_EQ(slots.value(), 2u);
}

TEST(Semaphore, TimeoutsAndBounds) {
  parx::Semaphore none(0);
  EXPECT_FALSE(none.acquire(30ms));
  EXPECT_FALSE(none.try_acquire());
  none.release();
  EXPECT_TRUE(none.acquire(1s));
  parx::BoundedSemaphore b(1);
  EXPECT_THROW(b.release(), parx::InvalidState);  // above its initial value
  EXPECT_TRUE(b.try_acquire());
  b.release();
  EXPECT_EQ(b.value(), 1u);
}

TEST(Condition, WaitForAChangeMadeByAnotherProcess) {
  parx::Condition cond;
  parx::SharedValue<int> stage(0);
  parx::Process p(advance_stage, cond, stage);
  p.start();
  {
    std::unique_lock g(cond.lock());
    EXPECT_TRUE(
        cond.wait_for([&] { return stage.ref() == 2; }, 10s));  // lock released while asleep
    EXPECT_EQ(stage.ref(), 2);
    EXPECT_FALSE(cond.wait_for([&] { return stage.ref() == 3; }, 30ms));  // times out
  }
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(RLock, ReentrantAndRobust) {
  parx::RLock lock;
  lock.lock();
  lock.lock();  // the holder may re-acquire
  lock.unlock();
  lock.unlock();
  parx::SharedValue<int> holding(0);
  parx::Process p(hold_rlock_twice_forever, lock, holding);
  p.start();
  ASSERT_TRUE(eventually([&] { return holding.get() == 1; }));
  EXPECT_EQ(lock.acquire(30ms), parx::LockStatus::timed_out);
  p.kill();
  p.join();
  EXPECT_EQ(lock.acquire(5s), parx::LockStatus::owner_died);  // held twice by a dead process
  lock.unlock();
  EXPECT_EQ(lock.acquire(1s), parx::LockStatus::acquired);
  lock.unlock();
}

TEST(Barrier, RoundsAcrossThreads) {
  parx::Barrier b(4);
  EXPECT_EQ(b.parties(), 4u);
  std::atomic<int> passed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([copy = b, &passed]() mutable {  // each party its own handle
      for (int r = 0; r < 50; ++r) {
        const auto idx = copy.wait(10s);
        EXPECT_LT(idx, 4u);
        passed.fetch_add(1);
      }
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(passed.load(), 200);
  EXPECT_FALSE(b.broken());
}

TEST(Barrier, APartyDiesTheOthersGetAnErrorNotAHang) {
  parx::Barrier b(3);
  parx::SharedValue<int> broken(0);
  parx::Process p1(rounds_until_broken, b, broken), p2(rounds_until_broken, b, broken);
  parx::Process dies(one_round_then_sleep, b);
  p1.start();
  p2.start();
  dies.start();
  std::this_thread::sleep_for(100ms);  // round 1 completes; round 2 waits for the sleeper
  dies.kill();
  dies.join();
  EXPECT_TRUE(p1.join(10s));
  EXPECT_TRUE(p2.join(10s));
  EXPECT_EQ(broken.get(), 2);  // both survivors were told
  EXPECT_TRUE(b.broken());
}

TEST(Barrier, TimeoutAbortAndReset) {
  parx::Barrier b(2);
  EXPECT_THROW(b.wait(30ms), parx::BrokenBarrier);  // the other party never comes
  EXPECT_TRUE(b.broken());
  EXPECT_THROW(b.wait(), parx::BrokenBarrier);
  b.reset();
  EXPECT_FALSE(b.broken());
  parx::Barrier other = b;
  std::thread t([&] { EXPECT_THROW(other.wait(10s), parx::BrokenBarrier); });
  std::this_thread::sleep_for(20ms);
  b.abort();
  t.join();
  EXPECT_THROW(parx::Barrier(0), parx::InvalidArgument);
}

// The creator of a segment is SIGKILLed: the fork server unlinks what it left.
TEST(SharedMemory, NothingLeftAfterCreatorIsSigkilled) {
  const auto helper = parx_test::spawn_helper_parent("PARX_IPC_PARENT_MODE=1");
  ASSERT_NE(helper.out, nullptr);
  const pid_t parent = helper.pid;
  char name[128] = {};
  long server = 0;
  ASSERT_EQ(std::fscanf(helper.out, "%127s %ld", name, &server), 2);
  fclose(helper.out);
  ASSERT_TRUE(shm_exists(name));
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  const bool cleaned = eventually([&] { return !shm_exists(name); });
  std::string diag;
  if (!cleaned) {
    std::ifstream st("/proc/" + std::to_string(server) + "/status");
    for (std::string line; std::getline(st, line);)
      if (line.rfind("State", 0) == 0 || line.rfind("Sig", 0) == 0 || line.rfind("Shd", 0) == 0 ||
          line.rfind("PPid", 0) == 0)
        diag += line + "; ";
  }
  EXPECT_TRUE(cleaned) << name << " leaked in /dev/shm; fork server " << server << ": " << diag;
}

// ---- forged and mismatched handles ---------------------------------------------------------
// Every ipc handle travels as its segment's name (detail/ipc_handle.hpp). A message that names
// no segment, a segment too small, or a segment holding another kind of object gives
// SerializationError naming the handle: never a handle over memory that is not what it claims.

template <class H>
std::string refusal(const parx::Bytes& msg) {
  try {
    parx::Decoder d(msg);
    (void)d.make<H>();
  } catch (const parx::SerializationError& e) {
    return e.what();
  }
  return "accepted";
}

template <class H>
void expect_refuses(const parx::Bytes& msg, const std::string& name, const std::string& why) {
  const std::string what = refusal<H>(msg);
  EXPECT_NE(what.find(name), std::string::npos) << name << ": " << what;
  EXPECT_NE(what.find(why), std::string::npos) << name << ": " << what;
}

// Each handle, decoded from a message naming no segment, a tiny segment and an Event's segment.
template <class H>
void expect_refuses_foreign(const std::string& name) {
  expect_refuses<H>(parx::encode(parx::SharedMemory()), name, "");
  const auto tiny = parx::SharedMemory::create(8);
  expect_refuses<H>(parx::encode(tiny), name, "");
  parx::Event event;
  if (name != "Event") expect_refuses<H>(parx::encode(event), name, "");
  parx::Semaphore sem;
  if (name != "Semaphore" && name != "BoundedSemaphore")
    expect_refuses<H>(parx::encode(sem), name, "");
}

TEST(IpcHandles, EveryHandleRefusesASegmentThatIsNotItsOwn) {
  expect_refuses_foreign<parx::Event>("Event");
  expect_refuses_foreign<parx::Semaphore>("Semaphore");
  expect_refuses_foreign<parx::BoundedSemaphore>("BoundedSemaphore");
  expect_refuses_foreign<parx::Barrier>("Barrier");
  expect_refuses_foreign<parx::Queue<int>>("Queue");
  expect_refuses_foreign<parx::JoinableQueue<int>>("JoinableQueue");
  expect_refuses_foreign<parx::SharedValue<int>>("SharedValue");
  expect_refuses_foreign<parx::SharedArray<int>>("SharedArray");
  // The message-level refusals name the handle and the reason.
  expect_refuses<parx::Event>(parx::encode(parx::SharedMemory()), "Event", "no segment");
  const parx::Queue<int> queue;
  expect_refuses<parx::Barrier>(parx::encode(queue), "Barrier", "holds no Barrier");
  const parx::Barrier barrier(2);
  expect_refuses<parx::Queue<int>>(parx::encode(barrier), "Queue", "holds no Queue");
  const auto tiny = parx::SharedMemory::create(8);
  expect_refuses<parx::Semaphore>(parx::encode(tiny), "Semaphore", "too small");
}

// A Queue's header is checked whole on attach: a ring capacity of 0 (which would divide by zero
// at the first put or get), one that is not padded, or one larger than the segment.
TEST(IpcHandles, AQueueWithADamagedCapacityIsRefused) {
  parx::Queue<int> q;
  // The header follows the queue's lock, on a 64-byte boundary: [magic][capacity]...
  const std::size_t at = (parx::Lock::footprint() + 63) / 64 * 64 + sizeof(std::uint64_t);
  auto* capacity = reinterpret_cast<std::uint64_t*>(q.segment()->data() + at);
  const std::uint64_t good = *capacity;
  for (const std::uint64_t bad :
       {std::uint64_t{0}, std::uint64_t{3}, good + 4096, ~std::uint64_t{0}}) {
    *capacity = bad;
    expect_refuses<parx::Queue<int>>(parx::encode(q), "Queue", "damaged queue header");
  }
  *capacity = good;
  const parx::Bytes msg = parx::encode(q);
  parx::Decoder d(msg);
  auto again = d.make<parx::Queue<int>>();
  again.put(5);
  EXPECT_EQ(q.get(), 5);
}

TEST(IpcHandles, SharedDataRefusesAnotherElementTypeOrShape) {
  parx::SharedValue<int> v(7);
  parx::SharedArray<int> a(4, 1);
  const parx::Bytes vm = parx::encode(v), am = parx::encode(a);
  parx::Decoder dv(vm), da(am);
  EXPECT_EQ(dv.make<parx::SharedValue<int>>().get(), 7);
  EXPECT_EQ(da.make<parx::SharedArray<int>>().load(3), 1);
  expect_refuses<parx::SharedValue<float>>(parx::encode(v), "SharedValue", "another type");
  expect_refuses<parx::SharedValue<long>>(parx::encode(v), "SharedValue", "another type");
  expect_refuses<parx::SharedArray<double>>(parx::encode(a), "SharedArray", "another type");
  expect_refuses<parx::SharedArray<int>>(parx::encode(v), "SharedArray", "holds no SharedArray");
  expect_refuses<parx::SharedValue<int>>(parx::encode(a), "SharedValue", "holds no SharedValue");
}

TEST(IpcHandles, ALockOrConditionRefusesASegmentWithoutOne) {
  // A Lock travels as a segment and an offset.
  const auto seg = parx::SharedMemory::create(64);
  expect_refuses<parx::Lock>(parx::encode(seg, std::uint64_t{4096}), "Lock", "too small");
  expect_refuses<parx::Lock>(parx::encode(seg, ~std::uint64_t{0}), "Lock", "too small");
  expect_refuses<parx::Lock>(parx::encode(parx::SharedMemory(), std::uint64_t{0}), "Lock",
                             "no segment");
  // A Condition's own word after a good lock.
  const parx::Lock lock;
  const parx::Event event;
  expect_refuses<parx::Condition>(parx::encode(lock, event), "Condition", "holds no Condition");
  // A Connection travels as the names of its two queues.
  expect_refuses<parx::Connection>(parx::encode(event.segment()->name(), std::string()),
                                   "Connection", "too small");
  const parx::Barrier barrier(2);
  expect_refuses<parx::Connection>(parx::encode(std::string(), barrier.segment()->name()),
                                   "Connection", "holds no Connection");
}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("PARX_IPC_PARENT_MODE")) {
    parx::init(argc, argv);
    auto seg = parx::SharedMemory::create(1 << 20);
    parx::Lock lock;  // its segment too
    lock.lock();
    lock.unlock();
    std::printf("%s %ld\n", seg.name().c_str(),
                static_cast<long>(parx::detail::ForkServer::get().server_pid()));
    std::fflush(stdout);
    pause();
    return 0;
  }
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
