#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace stratus {

Result<std::string> readFile(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::fromErrno(errno, "open " + path.string());
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::fromErrno(errno, "read " + path.string());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

static Status writeAll(int fd, std::string_view data, const std::string& what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::fromErrno(errno, "write " + what);
    }
    off += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status writeFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  std::string tmp = path.string() + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return Status::fromErrno(errno, "create " + tmp);
  if (::fchmod(fd.get(), mode) != 0) return Status::fromErrno(errno, "chmod " + tmp);
  RETURN_IF_ERROR(writeAll(fd.get(), data, tmp));
  if (::fsync(fd.get()) != 0) return Status::fromErrno(errno, "fsync " + tmp);
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::fromErrno(errno, "rename " + tmp + " to " + path.string());
  }
  return Status::ok();
}

Status writeControlFile(const std::filesystem::path& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Status::fromErrno(errno, "open " + path.string());
  ssize_t n;
  do {  // cgroupfs writes can be interrupted (seen under strace on memory.limit_in_bytes)
    n = ::write(fd.get(), data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::fromErrno(errno, "write '" + std::string(data) + "' to " + path.string());
  return Status::ok();
}

Status makeDirs(const std::filesystem::path& path, mode_t mode) {
  // Only directories created here get `mode`: chmod-ing an existing parent (say /tmp) would
  // silently change the host.
  std::filesystem::path current;
  for (const auto& part : path) {
    current /= part;
    if (::mkdir(current.c_str(), mode) == 0) {
      if (::chmod(current.c_str(), mode) != 0) {
        return Status::fromErrno(errno, "chmod " + current.string());
      }
    } else if (errno != EEXIST) {
      return Status::fromErrno(errno, "mkdir " + current.string());
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::fromErrno(errno, "stat " + path.string());
  if (!S_ISDIR(st.st_mode)) return Status::fromErrno(ENOTDIR, "mkdir -p " + path.string());
  return Status::ok();
}

Status removeTree(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Status::fromErrno(ec.value(), "rm -rf " + path.string());
  return Status::ok();
}

}  // namespace stratus
