// parx::Lock: a robust, process-shared pthread mutex in shared memory.
#include "parx/lock.hpp"

#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace parx {
namespace detail {

struct RobustMutex {
  static constexpr std::uint64_t kMagic = 0x7061727852424d58ull;  // "parxRBMX"
  pthread_mutex_t m;
  std::uint64_t magic;
};

}  // namespace detail

struct Lock::Impl {
  bool recursive = false;
  std::once_flag once;
  std::shared_ptr<SharedMemory> seg;
  std::size_t offset = 0;
  detail::RobustMutex* m = nullptr;

  void bind(bool create) {
    if (offset + sizeof(detail::RobustMutex) > seg->size())
      throw InvalidArgument("parx::Lock: the segment is too small for a lock at this offset");
    m = reinterpret_cast<detail::RobustMutex*>(seg->data() + offset);
    if (create) {
      pthread_mutexattr_t a;
      pthread_mutexattr_init(&a);
      pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
      pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
      pthread_mutexattr_settype(&a, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
      const int rc = pthread_mutex_init(&m->m, &a);
      pthread_mutexattr_destroy(&a);
      if (rc != 0) throw Error(std::string("parx::Lock: pthread_mutex_init: ") + std::strerror(rc));
      m->magic = detail::RobustMutex::kMagic;
    } else if (m->magic != detail::RobustMutex::kMagic) {
      throw SerializationError("parx::Lock: segment '" + seg->name() +
                               "' holds no lock at offset " + std::to_string(offset));
    }
  }
};

Lock::Lock() : impl_(std::make_shared<Impl>()) {}

Lock::Lock(Recursive) : impl_(std::make_shared<Impl>()) {
  impl_->recursive = true;
}

Lock::Lock(std::shared_ptr<SharedMemory> segment, std::size_t offset, bool create)
    : impl_(std::make_shared<Impl>()) {
  impl_->seg = std::move(segment);
  impl_->offset = offset;
  std::call_once(impl_->once, [&] { impl_->bind(create); });
}

std::size_t Lock::footprint() noexcept {
  return (sizeof(detail::RobustMutex) + 63) / 64 * 64;
}

detail::RobustMutex* Lock::mutex() const {
  std::call_once(impl_->once, [&] {
    impl_->seg = std::make_shared<SharedMemory>(SharedMemory::create(footprint()));
    impl_->offset = 0;
    impl_->bind(true);
  });
  return impl_->m;
}

const std::shared_ptr<SharedMemory>& Lock::segment() const {
  mutex();
  return impl_->seg;
}
std::size_t Lock::offset() const {
  mutex();
  return impl_->offset;
}

namespace {
LockStatus finish(pthread_mutex_t* m, int rc) {
  if (rc == 0) return LockStatus::acquired;
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(m);  // the caller now holds a usable lock
    return LockStatus::owner_died;
  }
  if (rc == ETIMEDOUT || rc == EBUSY) return LockStatus::timed_out;
  if (rc == EDEADLK) throw InvalidState("parx::Lock: this thread already holds the lock");
  throw Error(std::string("parx::Lock: ") + std::strerror(rc));
}
}  // namespace

LockStatus Lock::acquire() {
  pthread_mutex_t* m = &mutex()->m;
  const LockStatus st = finish(m, pthread_mutex_lock(m));
  owner_died_ = st == LockStatus::owner_died;
  return st;
}

LockStatus Lock::acquire_ns(long long timeout_ns) {
  pthread_mutex_t* m = &mutex()->m;
  // pthread_mutex_timedlock (CLOCK_REALTIME) rather than pthread_mutex_clocklock: sanitizers and
  // debuggers understand it everywhere. A wall-clock jump can only stretch or shorten one wait.
  timespec abs{};
  clock_gettime(CLOCK_REALTIME, &abs);
  if (timeout_ns < 0) timeout_ns = 0;
  abs.tv_sec += static_cast<time_t>(timeout_ns / 1'000'000'000);
  abs.tv_nsec += static_cast<long>(timeout_ns % 1'000'000'000);
  if (abs.tv_nsec >= 1'000'000'000) {
    abs.tv_sec += 1;
    abs.tv_nsec -= 1'000'000'000;
  }
  const int rc = pthread_mutex_timedlock(m, &abs);
#if defined(__SANITIZE_THREAD__)
  // TSan's timedlock interceptor records a lock only on 0, not on EOWNERDEAD (where the caller
  // does hold it): tell it.
  if (rc == EOWNERDEAD) {
    __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
    __tsan_mutex_post_lock(m, __tsan_mutex_try_lock, 0);
  }
#endif
  const LockStatus st = finish(m, rc);
  if (st != LockStatus::timed_out) owner_died_ = st == LockStatus::owner_died;
  return st;
}

void Lock::lock() {
  (void)acquire();
}

bool Lock::try_lock() {
  pthread_mutex_t* m = &mutex()->m;
  const LockStatus st = finish(m, pthread_mutex_trylock(m));
  if (st == LockStatus::timed_out) return false;
  owner_died_ = st == LockStatus::owner_died;
  return true;
}

void Lock::unlock() {
  const int rc = pthread_mutex_unlock(&mutex()->m);
  if (rc == EPERM)
    throw InvalidState("parx::Lock::unlock: the calling thread does not hold the lock");
  if (rc != 0) throw Error(std::string("parx::Lock::unlock: ") + std::strerror(rc));
}

}  // namespace parx
