#include "codepack/pack_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cstring>

#include "codepack/sha256.h"
#include "common/fs.h"
#include "common/unique_fd.h"

namespace stratus {

Status MemoryDataSource::read(uint64_t offset, size_t length, char* out) {
  if (offset > bytes_.size() || length > bytes_.size() - offset) {
    return invalidArgument("corrupt code pack: data file too short (need " +
                           std::to_string(offset + length) + " bytes, have " +
                           std::to_string(bytes_.size()) + ")");
  }
  std::memcpy(out, bytes_.data() + offset, length);
  return Status::ok();
}

PackReader::PackReader(std::shared_ptr<const PackIndex> index, std::shared_ptr<PackDataSource> data,
                       size_t cachedChunks)
    : index_(std::move(index)),
      data_(std::move(data)),
      capacity_(cachedChunks == 0 ? 1 : cachedChunks),
      slots_(capacity_) {}

Result<std::shared_ptr<const std::string>> PackReader::loadChunk(const PackChunk& k, uint32_t c) {
  std::string stored(k.storedLength, '\0');
  RETURN_IF_ERROR(data_->read(k.dataOffset, stored.size(), stored.data()));
  auto raw = std::make_shared<std::string>();
  if (k.codec == static_cast<uint8_t>(ChunkCodec::kZstd)) {
    raw->resize(k.rawLength);
    size_t n = ZSTD_decompress(raw->data(), raw->size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != k.rawLength) {
      data_->invalidate(k.dataOffset, k.storedLength);
      return invalidArgument(
          "corrupt code pack: chunk " + std::to_string(c) + " does not decompress to its length" +
          (ZSTD_isError(n) ? std::string(" (") + ZSTD_getErrorName(n) + ")" : std::string()));
    }
  } else {
    *raw = std::move(stored);
  }
  Sha256 h = Sha256Hasher::of(*raw);
  if (std::memcmp(h.data(), k.sha256, 32) != 0) {
    data_->invalidate(k.dataOffset, k.storedLength);
    return invalidArgument("corrupt code pack: chunk " + std::to_string(c) +
                           " fails its SHA-256 check");
  }
  return std::shared_ptr<const std::string>(std::move(raw));
}

Result<std::shared_ptr<const std::string>> PackReader::chunk(uint32_t c) {
  const PackChunk& k = index_->chunk(c);
  {
    std::lock_guard lock(mu_);
    for (Slot& s : slots_) {
      if (s.key == k.dataOffset && s.bytes && s.bytes->size() == k.rawLength) {
        s.used = ++tick_;
        return s.bytes;
      }
    }
  }
  // Decode outside the lock: concurrent readers of different chunks do not wait on each other
  // (two readers of the same cold chunk may both decode it; the result is identical).
  auto loaded = loadChunk(k, c);
  if (!loaded) {
    // Retry once: the source dropped its copy of the bad bytes and fetches them again.
    loaded = loadChunk(k, c);
    if (!loaded) return loaded.status();
  }
  std::lock_guard lock(mu_);
  Slot* victim = &slots_[0];
  for (Slot& s : slots_) {
    if (s.used < victim->used) victim = &s;
  }
  victim->key = k.dataOffset;
  victim->used = ++tick_;
  victim->bytes = *loaded;
  return *loaded;
}

Result<size_t> PackReader::read(uint32_t entry, uint64_t offset, size_t length, char* out) {
  if (entry >= index_->entryCount()) return invalidArgument("no such pack entry");
  const PackEntry& e = index_->entry(entry);
  if (!PackIndex::isFile(e)) return invalidArgument("pack entry is not a regular file");
  if (offset >= e.size) return size_t{0};
  length = static_cast<size_t>(std::min<uint64_t>(length, e.size - offset));
  size_t done = 0;
  while (done < length) {
    const uint64_t pos = offset + done;
    const uint32_t c = index_->chunkAt(entry, pos);
    ASSIGN_OR_RETURN(auto bytes, chunk(c));
    const uint64_t within = pos - index_->chunkFileOffset(c);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes->size() - within, length - done));
    std::memcpy(out + done, bytes->data() + within, n);
    done += n;
  }
  return done;
}

Result<std::string> PackReader::readFile(uint32_t entry) {
  if (entry >= index_->entryCount()) return invalidArgument("no such pack entry");
  const PackEntry& e = index_->entry(entry);
  if (!PackIndex::isFile(e)) return invalidArgument("pack entry is not a regular file");
  std::string out(static_cast<size_t>(e.size), '\0');
  ASSIGN_OR_RETURN(size_t n, read(entry, 0, out.size(), out.data()));
  out.resize(n);
  if (std::memcmp(Sha256Hasher::of(out).data(), e.sha256, 32) != 0) {
    return invalidArgument("corrupt code pack: " + index_->path(entry) +
                           " fails its SHA-256 check");
  }
  return out;
}

namespace {

Status extractInto(PackReader& reader, int rootFd) {
  const PackIndex& ix = reader.index();
  // The index is in depth-first pre-order (PackIndex::parse checks), so the open directories
  // form a stack: one fd per level, however many directories the pack has.
  std::vector<std::pair<uint32_t, UniqueFd>> open;
  open.emplace_back(0, UniqueFd(::fcntl(rootFd, F_DUPFD_CLOEXEC, 0)));
  if (!open.back().second) return Status::fromErrno(errno, "dup code root fd");
  std::string buf;
  for (uint32_t i = 1; i < ix.entryCount(); ++i) {
    const PackEntry& e = ix.entry(i);
    while (open.size() > 1 && open.back().first != e.parent) open.pop_back();
    if (open.back().first != e.parent) return internalError("pack entries out of order");
    const int parent = open.back().second.get();
    const std::string name(ix.name(i));
    if (PackIndex::isDir(e)) {
      if (::mkdirat(parent, name.c_str(), 0755) != 0 || ::fchmodat(parent, name.c_str(), 0755, 0)) {
        return Status::fromErrno(errno, "mkdir " + ix.path(i));
      }
      UniqueFd d(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!d) return Status::fromErrno(errno, "open " + ix.path(i));
      open.emplace_back(i, std::move(d));
    } else if (PackIndex::isSymlink(e)) {
      if (::symlinkat(std::string(ix.symlinkTarget(i)).c_str(), parent, name.c_str()) != 0) {
        return Status::fromErrno(errno, "symlink " + ix.path(i));
      }
    } else {
      const mode_t mode = e.mode & 0777;
      UniqueFd fd(::openat(parent, name.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
      if (!fd) return Status::fromErrno(errno, "create " + ix.path(i));
      if (::fchmod(fd.get(), mode) != 0) return Status::fromErrno(errno, "chmod " + ix.path(i));
      uint64_t off = 0;
      buf.resize(1 << 20);
      Sha256Hasher fileHash;
      while (off < e.size) {
        ASSIGN_OR_RETURN(size_t n, reader.read(i, off, buf.size(), buf.data()));
        fileHash.update(buf.data(), n);
        size_t w = 0;
        while (w < n) {
          ssize_t r = ::write(fd.get(), buf.data() + w, n - w);
          if (r < 0) {
            if (errno == EINTR) continue;
            return Status::fromErrno(errno, "write " + ix.path(i));
          }
          w += static_cast<size_t>(r);
        }
        off += n;
      }
      if (std::memcmp(fileHash.finish().data(), e.sha256, 32) != 0) {
        return invalidArgument("corrupt code pack: " + ix.path(i) + " fails its SHA-256 check");
      }
    }
  }
  return Status::ok();
}

}  // namespace

Status extractPack(PackReader& reader, const std::filesystem::path& destDir) {
  if (destDir.has_parent_path()) RETURN_IF_ERROR(makeDirs(destDir.parent_path()));
  if (::mkdir(destDir.c_str(), 0755) != 0) {
    return Status::fromErrno(errno, "create code directory " + destDir.string());
  }
  Status s = [&]() -> Status {
    if (::chmod(destDir.c_str(), 0755) != 0) {
      return Status::fromErrno(errno, "chmod " + destDir.string());
    }
    UniqueFd root(::open(destDir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) return Status::fromErrno(errno, "open " + destDir.string());
    return extractInto(reader, root.get());
  }();
  if (!s) (void)removeTree(destDir);
  return s;
}

}  // namespace stratus
