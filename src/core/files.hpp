// core/files.hpp — how parx writes a file a user named (a trace, a summary): never through a
// planted symlink, never over something that is not a regular file, never readable by others.
//
// Contract
//   * write_file_replacing(path, bytes) writes `bytes` to a temporary file that it creates
//     exclusively (mkostemp: an unpredictable name, O_EXCL, mode 0600) in `path`'s directory, then
//     renames it over `path`. A reader sees the old file or the new one, never a part.
//   * `path` must be a regular file or not exist: a symlink, a FIFO, a device, a directory or a
//     socket is refused and left as it is. rename() replaces the directory entry and never
//     follows a symlink, so a link planted after the check still points where it did, and what it
//     points at is not written.
//   * The file ends with mode `mode` (default 0600: traces hold error text and host names).
//   * Returns "" on success, else why it failed (the temporary file is removed).
//
// Thread-safety: safe from any thread; two writers of one path leave one of the two files whole.
//
// Example
//   if (auto why = parx::detail::write_file_replacing("run.json", text); !why.empty())
//     std::fprintf(stderr, "parx: cannot write the trace: %s\n", why.c_str());
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace parx::detail {

std::string write_file_replacing(const std::string& path, std::string_view bytes,
                                 mode_t mode = 0600);

// Why `path` may not be replaced by a file parx writes ("" if it may): it exists and is not a
// regular file.
std::string not_replaceable(const std::string& path);

}  // namespace parx::detail
