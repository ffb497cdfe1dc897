// Fuzz target for the checkpoint journal's reader (parx/detail/journal.hpp): any file must be
// loaded (its torn tail cut) or refused with CheckpointError naming the file. No crash, no read
// outside the file's bytes (ASan), no undefined behaviour (UBSan).
//
// Input: the journal file's bytes (written to a private temporary file for each run).
//
// Built as a libFuzzer target (preset `fuzz`) and as a deterministic replay in the suite.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "parx/detail/journal.hpp"
#include "parx/errors.hpp"
#include "replay.hpp"

namespace {

const char* kFingerprint = "fn=fuzz; in=i; out=d; n=100";

const std::string& journal_path() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/parx-fuzz-journal-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) std::abort();
    close(fd);
    std::atexit([] { unlink(journal_path().c_str()); });
    return std::string(tmpl);
  }();
  return path;
}

void write_file(const std::uint8_t* data, std::size_t size) {
  const int fd = open(journal_path().c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) std::abort();
  std::size_t put = 0;
  while (put < size) {
    const ssize_t w = write(fd, data + put, size - put);
    if (w <= 0) std::abort();
    put += static_cast<std::size_t>(w);
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  write_file(data, size);
  try {
    parx::detail::Journal j(journal_path(), kFingerprint, std::chrono::milliseconds(0));
    for (std::uint64_t i = 0; i < 4; ++i)
      (void)j.find(i, i * 7);
  } catch (const parx::CheckpointError&) {
  }
  return 0;
}

// A journal with a few records, as a map writes it.
std::vector<std::vector<std::uint8_t>> fuzz_seeds() {
  write_file(nullptr, 0);
  {
    parx::detail::Journal j(journal_path(), kFingerprint, std::chrono::milliseconds(0));
    const std::byte r1[8] = {std::byte{1}}, r2[3] = {std::byte{2}, std::byte{3}, std::byte{4}};
    const parx::detail::Journal::Record recs[] = {{0, 0, r1}, {1, 7, r2}, {2, 14, {}}};
    j.append(recs);
    (void)j.close();
  }
  std::vector<std::uint8_t> bytes;
  const int fd = open(journal_path().c_str(), O_RDONLY | O_CLOEXEC);
  std::uint8_t buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
    bytes.insert(bytes.end(), buf, buf + n);
  close(fd);
  std::vector<std::vector<std::uint8_t>> seeds{bytes};
  seeds.push_back(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  return seeds;
}
