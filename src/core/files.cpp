// Writing a user-named file safely (core/files.hpp).
#include "core/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace parx::detail {

namespace {

const char* kind_of(mode_t m) {
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

}  // namespace

std::string not_replaceable(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT ? "" : errno_text("cannot stat", path);
  if (S_ISREG(st.st_mode)) return "";
  return path + " is " + kind_of(st.st_mode) + "; parx writes only regular files and does not " +
         "replace it";
}

std::string write_file_replacing(const std::string& path, std::string_view bytes, mode_t mode) {
  if (path.empty()) return "no file name";
  if (std::string why = not_replaceable(path); !why.empty()) return why;
  const auto slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmpl = dir + "/." + base + ".parx-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = mkostemp(name.data(), O_CLOEXEC);  // O_CREAT | O_EXCL, mode 0600
  if (fd < 0) return errno_text("cannot create a temporary file in", dir);
  const std::string tmp(name.data());
  auto fail = [&](const std::string& why) {
    close(fd);
    unlink(tmp.c_str());
    return why;
  };
  if (mode != 0600 && fchmod(fd, mode) != 0) return fail(errno_text("cannot set the mode of", tmp));
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return fail(errno_text("cannot write", tmp));
    done += static_cast<std::size_t>(w);
  }
  if (close(fd) != 0) {
    const std::string why = errno_text("cannot write", tmp);
    unlink(tmp.c_str());
    return why;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text("cannot rename the new file over", path);
    unlink(tmp.c_str());
    return why;
  }
  return "";
}

}  // namespace parx::detail
