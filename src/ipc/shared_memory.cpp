// Named shared-memory segments on POSIX shm (/dev/shm), mode 0600.
#include "parx/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>

#include "ipc/fork_server.hpp"

namespace parx {
namespace {

std::string unique_name() {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  char buf[64];
  std::snprintf(buf, sizeof buf, "parx-%d-%u-%08x", static_cast<int>(getpid()),
                counter.fetch_add(1), static_cast<unsigned>(rd()));
  return buf;
}

std::string posix_name(const std::string& name) {
  if (name.empty() || name.size() > 200 || name.find('/') != std::string::npos)
    throw InvalidArgument("shared memory name '" + name + "' must be 1-200 characters without '/'");
  return "/" + name;
}

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

SharedMemory SharedMemory::create(std::size_t size, const std::string& name) {
  if (size == 0) throw InvalidArgument("SharedMemory::create: size must be positive");
  SharedMemory s;
  s.name_ = name.empty() ? unique_name() : name;
  const std::string path = posix_name(s.name_);
  const int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("parx: cannot create shared memory '" + s.name_ + "': " + errno_text());
  // Owned from here: a failure below unlinks it.
  s.owner_ = true;
  s.linked_ = true;
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const std::string why = errno_text();
    close(fd);
    shm_unlink(path.c_str());
    s.linked_ = false;
    throw Error("parx: cannot size shared memory '" + s.name_ + "': " + why);
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    const std::string why = errno_text();
    shm_unlink(path.c_str());
    s.linked_ = false;
    throw Error("parx: cannot map shared memory '" + s.name_ + "': " + why);
  }
  s.data_ = static_cast<std::byte*>(p);
  s.size_ = size;
  if (detail::fork_server_running()) detail::ForkServer::get().watch_shm(path, true);
  return s;
}

SharedMemory SharedMemory::attach(const std::string& name) {
  const std::string path = posix_name(name);
  const int fd = shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0)
    throw Error("parx: no shared memory segment named '" + name + "' (" + errno_text() + ")");
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    close(fd);
    throw Error("parx: shared memory '" + name + "' is empty or unreadable");
  }
  void* p = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    throw Error("parx: cannot map shared memory '" + name + "': " + errno_text());
  SharedMemory s;
  s.data_ = static_cast<std::byte*>(p);
  s.size_ = static_cast<std::size_t>(st.st_size);
  s.name_ = name;
  return s;
}

SharedMemory::SharedMemory(SharedMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      name_(std::move(o.name_)),
      owner_(std::exchange(o.owner_, false)),
      linked_(std::exchange(o.linked_, false)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    name_ = std::move(o.name_);
    owner_ = std::exchange(o.owner_, false);
    linked_ = std::exchange(o.linked_, false);
  }
  return *this;
}

SharedMemory::~SharedMemory() {
  release();
}

void SharedMemory::unlink() {
  if (!owner_ || !linked_) return;
  const std::string path = "/" + name_;
  shm_unlink(path.c_str());
  linked_ = false;
  if (detail::fork_server_running()) detail::ForkServer::get().watch_shm(path, false);
}

void SharedMemory::release() noexcept {
  try {
    unlink();
  } catch (...) {
  }
  if (data_) munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace parx
