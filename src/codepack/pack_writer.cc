#include "codepack/pack_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "codepack/sha256.h"
#include "common/unique_fd.h"

namespace stratus {
namespace {

Status writeAll(int fd, const char* p, size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::fromErrno(errno, "write " + what);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::ok();
}

class Builder {
 public:
  Builder(int dataFd, const std::string& dataName, const PackWriteOptions& o)
      : fd_(dataFd), dataName_(dataName), options_(o), zctx_(ZSTD_createCCtx()) {}
  ~Builder() { ZSTD_freeCCtx(zctx_); }

  Status run(int rootFd, PackWriteResult& out) {
    char header[kPackDataHeaderBytes] = {};
    std::memcpy(header, kPackDataMagic, 8);
    uint32_t v = kPackVersion;
    std::memcpy(header + 8, &v, 4);
    RETURN_IF_ERROR(append(std::string_view(header, sizeof header)));
    PackEntry root{};
    root.mode = S_IFDIR | 0755;
    entries_.push_back(root);
    RETURN_IF_ERROR(walk(rootFd, 0, ""));
    out.index = serialize();
    out.dataSha256 = toHex(dataSha_);
    out.dataBytes = static_cast<int64_t>(dataBytes_);
    out.rawBytes = rawBytes_;
    out.files = files_;
    out.chunks = static_cast<int64_t>(chunks_.size());
    out.storedChunks = static_cast<int64_t>(stored_.size());
    return Status::ok();
  }

 private:
  uint32_t addString(std::string_view s) {
    uint32_t off = static_cast<uint32_t>(strings_.size());
    strings_.append(s);
    return off;
  }

  Status append(std::string_view bytes) {
    RETURN_IF_ERROR(writeAll(fd_, bytes.data(), bytes.size(), dataName_));
    dataHash_.update(bytes);
    dataBytes_ += bytes.size();
    return Status::ok();
  }

  Status walk(int dirFd, uint32_t self, const std::string& rel) {
    UniqueFd dup(::fcntl(dirFd, F_DUPFD_CLOEXEC, 0));
    if (!dup) return Status::fromErrno(errno, "dup directory fd");
    DIR* d = ::fdopendir(dup.get());
    if (d == nullptr) return Status::fromErrno(errno, "opendir " + rel);
    dup.release();
    std::vector<std::string> names;
    errno = 0;
    while (dirent* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return Status::fromErrno(err, "readdir " + rel);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      const std::string path = rel.empty() ? n : rel + "/" + n;
      struct stat st;
      if (::fstatat(dirFd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return Status::fromErrno(errno, "stat " + path);
      }
      PackEntry e{};
      e.parent = self;
      e.nameOffset = addString(n);
      e.nameLength = static_cast<uint32_t>(n.size());
      const uint32_t idx = static_cast<uint32_t>(entries_.size());
      if (S_ISDIR(st.st_mode)) {
        e.mode = S_IFDIR | 0755;
        entries_.push_back(e);
        UniqueFd sub(::openat(dirFd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return Status::fromErrno(errno, "open directory " + path);
        RETURN_IF_ERROR(walk(sub.get(), idx, path));
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t len = ::readlinkat(dirFd, n.c_str(), target.data(), target.size());
        if (len < 0) return Status::fromErrno(errno, "readlink " + path);
        target.resize(static_cast<size_t>(len));
        e.mode = S_IFLNK | 0777;
        e.size = target.size();
        e.first = addString(target);
        Sha256 h = Sha256Hasher::of(target);
        std::memcpy(e.sha256, h.data(), 32);
        entries_.push_back(e);
      } else if (S_ISREG(st.st_mode)) {
        e.mode = S_IFREG | ((st.st_mode & 0111) ? 0755 : 0644);
        entries_.push_back(e);
        RETURN_IF_ERROR(addFile(dirFd, n, path, idx));
      } else {
        return invalidArgument("code tree entry '" + path +
                               "' is not a file, directory or symlink");
      }
    }
    return Status::ok();
  }

  Status addFile(int dirFd, const std::string& name, const std::string& path, uint32_t idx) {
    UniqueFd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Status::fromErrno(errno, "open " + path);
    Sha256Hasher fileHash;
    std::string buf(options_.chunkBytes, '\0');
    const uint32_t first = static_cast<uint32_t>(chunks_.size());
    uint64_t size = 0;
    for (;;) {
      size_t have = 0;
      while (have < buf.size()) {
        ssize_t r = ::read(fd.get(), buf.data() + have, buf.size() - have);
        if (r < 0) {
          if (errno == EINTR) continue;
          return Status::fromErrno(errno, "read " + path);
        }
        if (r == 0) break;
        have += static_cast<size_t>(r);
      }
      if (have == 0) break;
      std::string_view raw(buf.data(), have);
      fileHash.update(raw);
      size += have;
      RETURN_IF_ERROR(addChunk(raw));
      if (have < buf.size()) break;
    }
    PackEntry& e = entries_[idx];
    e.size = size;
    e.first = first;
    e.count = static_cast<uint32_t>(chunks_.size()) - first;
    Sha256 h = fileHash.finish();
    std::memcpy(e.sha256, h.data(), 32);
    rawBytes_ += static_cast<int64_t>(size);
    files_ += 1;
    return Status::ok();
  }

  Status addChunk(std::string_view raw) {
    Sha256 h = Sha256Hasher::of(raw);
    PackChunk c{};
    std::memcpy(c.sha256, h.data(), 32);
    c.rawLength = static_cast<uint32_t>(raw.size());
    if (auto it = stored_.find(h); it != stored_.end()) {
      c.dataOffset = it->second.dataOffset;
      c.storedLength = it->second.storedLength;
      c.codec = it->second.codec;
      chunks_.push_back(c);
      return Status::ok();
    }
    c.dataOffset = dataBytes_;
    c.codec = static_cast<uint8_t>(ChunkCodec::kNone);
    c.storedLength = c.rawLength;
    std::string_view stored = raw;
    if (options_.zstdLevel > 0 && zctx_ != nullptr) {
      zbuf_.resize(ZSTD_compressBound(raw.size()));
      size_t z = ZSTD_compressCCtx(zctx_, zbuf_.data(), zbuf_.size(), raw.data(), raw.size(),
                                   options_.zstdLevel);
      // Keep compression only when it pays: every read of a compressed chunk costs a decode.
      if (!ZSTD_isError(z) && z < raw.size() - raw.size() / 16) {
        c.codec = static_cast<uint8_t>(ChunkCodec::kZstd);
        c.storedLength = static_cast<uint32_t>(z);
        stored = std::string_view(zbuf_.data(), z);
      }
    }
    RETURN_IF_ERROR(append(stored));
    stored_.emplace(h, c);
    chunks_.push_back(c);
    return Status::ok();
  }

  std::string serialize() {
    dataSha_ = dataHash_.finish();
    PackIndexHeader h{};
    std::memcpy(h.magic, kPackIndexMagic, 8);
    h.version = kPackVersion;
    h.maxChunkBytes = options_.chunkBytes;
    h.entryCount = static_cast<uint32_t>(entries_.size());
    h.chunkCount = static_cast<uint32_t>(chunks_.size());
    h.stringBytes = static_cast<uint32_t>(strings_.size());
    h.dataBytes = dataBytes_;
    std::memcpy(h.dataSha256, dataSha_.data(), 32);
    std::string out;
    out.append(reinterpret_cast<const char*>(&h), sizeof h);
    out.append(reinterpret_cast<const char*>(entries_.data()), entries_.size() * sizeof(PackEntry));
    out.append(reinterpret_cast<const char*>(chunks_.data()), chunks_.size() * sizeof(PackChunk));
    out.append(strings_);
    Sha256 trailer = Sha256Hasher::of(out);
    out.append(reinterpret_cast<const char*>(trailer.data()), trailer.size());
    return out;
  }

  int fd_;
  std::string dataName_;
  PackWriteOptions options_;
  ZSTD_CCtx* zctx_;
  std::string zbuf_;
  std::vector<PackEntry> entries_;
  std::vector<PackChunk> chunks_;
  std::string strings_;
  std::map<Sha256, PackChunk> stored_;
  Sha256Hasher dataHash_;
  Sha256 dataSha_{};
  uint64_t dataBytes_ = 0;
  int64_t rawBytes_ = 0;
  int64_t files_ = 0;
};

}  // namespace

Result<PackWriteResult> writePack(const std::filesystem::path& tree,
                                  const std::filesystem::path& dataPath,
                                  const PackWriteOptions& options) {
  if (options.chunkBytes == 0 || options.chunkBytes > kPackMaxChunkBytes) {
    return invalidArgument("pack chunk size must be 1.." + std::to_string(kPackMaxChunkBytes));
  }
  UniqueFd root(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return Status::fromErrno(errno, "open code tree " + tree.string());
  UniqueFd data(::open(dataPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!data) return Status::fromErrno(errno, "create pack data file " + dataPath.string());
  PackWriteResult out;
  Builder b(data.get(), dataPath.string(), options);
  Status s = b.run(root.get(), out);
  if (s && ::fsync(data.get()) != 0) s = Status::fromErrno(errno, "fsync " + dataPath.string());
  if (!s) {
    ::unlink(dataPath.c_str());
    return s;
  }
  return out;
}

}  // namespace stratus
