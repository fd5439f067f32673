#include "codepack/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/unique_fd.h"

namespace stratus {

bool validBlobName(std::string_view name) {
  if (name.empty() || name.size() > 512) return false;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string_view c = name.substr(i, j - i);
    if (c.empty() || c == "." || c == ".." || c.front() == '.') return false;
    for (char ch : c) {
      bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '.' || ch == '_' || ch == '-';
      if (!ok) return false;
    }
    i = j + 1;
  }
  return true;
}

Result<std::string> BlobStore::readAll(std::string_view name, int64_t maxBytes) {
  ASSIGN_OR_RETURN(int64_t n, size(name));
  if (n > maxBytes) {
    return invalidArgument("blob " + std::string(name) + " is " + std::to_string(n) +
                           " bytes, over the " + std::to_string(maxBytes) + "-byte limit");
  }
  if (n == 0) return std::string();
  return readRange(name, 0, n);
}

Status BlobStore::putBytes(std::string_view name, std::string_view bytes,
                           const std::filesystem::path& scratchDir, bool durable) {
  RETURN_IF_ERROR(makeDirs(scratchDir, 0700));
  const std::filesystem::path tmp = scratchDir / (".put-" + randomHex(8));
  // Blobs are root's alone (host_cache.h): a sandbox never reads a pack but through its tree.
  if (durable) {
    RETURN_IF_ERROR(writeFileAtomic(tmp, bytes, 0600));
  } else {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return Status::fromErrno(errno, "create " + tmp.string());
    for (size_t done = 0; done < bytes.size();) {
      ssize_t w = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        Status s = Status::fromErrno(errno, "write " + tmp.string());
        ::unlink(tmp.c_str());
        return s;
      }
      done += static_cast<size_t>(w);
    }
  }
  Status s = putFile(name, tmp);
  ::unlink(tmp.c_str());
  return s;
}

namespace {
Status badName(std::string_view name) {
  return invalidArgument("invalid blob name '" + std::string(name) + "'");
}
}  // namespace

Result<int64_t> LocalDirBlobStore::size(std::string_view name) {
  if (!validBlobName(name)) return badName(name);
  struct stat st;
  const auto p = root_ / std::string(name);
  if (::stat(p.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return notFound("blob " + std::string(name));
    return Status::fromErrno(errno, "stat blob " + p.string());
  }
  if (!S_ISREG(st.st_mode)) return notFound("blob " + std::string(name));
  return static_cast<int64_t>(st.st_size);
}

Result<std::string> LocalDirBlobStore::readRange(std::string_view name, int64_t offset,
                                                 int64_t length) {
  if (!validBlobName(name)) return badName(name);
  if (offset < 0 || length < 0) return invalidArgument("negative blob range");
  const auto p = root_ / std::string(name);
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return notFound("blob " + std::string(name));
    return Status::fromErrno(errno, "open blob " + p.string());
  }
  std::string out(static_cast<size_t>(length), '\0');
  size_t have = 0;
  while (have < out.size()) {
    ssize_t r = ::pread(fd.get(), out.data() + have, out.size() - have,
                        offset + static_cast<int64_t>(have));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::fromErrno(errno, "read blob " + p.string());
    }
    if (r == 0) {
      return invalidArgument("blob " + std::string(name) + " ends before byte " +
                             std::to_string(offset + length));
    }
    have += static_cast<size_t>(r);
  }
  return out;
}

Status LocalDirBlobStore::putFile(std::string_view name, const std::filesystem::path& path) {
  if (!validBlobName(name)) return badName(name);
  const auto dst = root_ / std::string(name);
  RETURN_IF_ERROR(makeDirs(dst.parent_path(), 0700));
  // Root's alone, whatever mode the file was written with (host_cache.h).
  if (::chmod(path.c_str(), 0600) != 0) return Status::fromErrno(errno, "chmod " + path.string());
  // link() never replaces: an existing blob (same name, so same bytes) wins.
  if (::link(path.c_str(), dst.c_str()) != 0 && errno != EEXIST) {
    if (errno != EXDEV) return Status::fromErrno(errno, "store blob " + dst.string());
    ASSIGN_OR_RETURN(std::string bytes, readFile(path));
    const auto tmp = dst.parent_path() / (".in-" + randomHex(8));
    RETURN_IF_ERROR(writeFileAtomic(tmp, bytes, 0600));
    if (::link(tmp.c_str(), dst.c_str()) != 0 && errno != EEXIST) {
      int err = errno;
      ::unlink(tmp.c_str());
      return Status::fromErrno(err, "store blob " + dst.string());
    }
    ::unlink(tmp.c_str());
  }
  return Status::ok();
}

std::optional<std::filesystem::path> LocalDirBlobStore::localPath(std::string_view name) {
  if (!validBlobName(name)) return std::nullopt;
  auto p = root_ / std::string(name);
  struct stat st;
  if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return p;
}

Status LocalDirBlobStore::remove(std::string_view name) {
  if (!validBlobName(name)) return badName(name);
  const auto p = root_ / std::string(name);
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
    return Status::fromErrno(errno, "remove blob " + p.string());
  }
  return Status::ok();
}

}  // namespace stratus
