#include "codepack/host_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "codepack/sha256.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"

namespace stratus {

std::string codeOwnerDirName(CodeOwner owner) {
  return "owner-" + std::to_string(owner.uid) + "-" + std::to_string(owner.gid);
}

bool isSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// ---- CachedPackData -------------------------------------------------------------------------

namespace {
constexpr uint64_t kBackgroundBlocks = 16;  // background download: 4 MiB per range request

Status preadAll(int fd, char* out, size_t length, uint64_t offset, const std::string& what) {
  size_t have = 0;
  while (have < length) {
    ssize_t r = ::pread(fd, out + have, length - have, static_cast<off_t>(offset + have));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::fromErrno(errno, "read " + what);
    }
    if (r == 0) return invalidArgument("corrupt code pack: " + what + " is too short");
    have += static_cast<size_t>(r);
  }
  return Status::ok();
}
}  // namespace

Result<std::shared_ptr<CachedPackData>> CachedPackData::openLocal(const std::filesystem::path& file,
                                                                  uint64_t size) {
  std::shared_ptr<CachedPackData> d(new CachedPackData());
  d->fd_.reset(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!d->fd_) return Status::fromErrno(errno, "open code pack data " + file.string());
  struct stat st;
  if (::fstat(d->fd_.get(), &st) != 0) return Status::fromErrno(errno, "stat " + file.string());
  if (static_cast<uint64_t>(st.st_size) != size) {
    return invalidArgument("corrupt code pack: " + file.string() + " is " +
                           std::to_string(st.st_size) + " bytes, the index says " +
                           std::to_string(size));
  }
  d->size_ = size;
  d->finalPath_ = file;
  d->complete_ = true;
  d->finished_ = true;
  return d;
}

Result<std::shared_ptr<CachedPackData>> CachedPackData::openRemote(
    std::shared_ptr<BlobStore> source, std::string blobName, uint64_t size, Sha256 sha256,
    std::filesystem::path partialPath, std::filesystem::path finalPath) {
  std::shared_ptr<CachedPackData> d(new CachedPackData());
  d->source_ = std::move(source);
  d->blobName_ = std::move(blobName);
  d->size_ = size;
  d->sha256_ = sha256;
  d->partialPath_ = std::move(partialPath);
  d->finalPath_ = std::move(finalPath);
  RETURN_IF_ERROR(makeDirs(d->partialPath_.parent_path(), 0700));
  // A partial file of an earlier run is not trusted: nobody knows which blocks it holds.
  d->fd_.reset(::open(d->partialPath_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (d->fd_) (void)::fchmod(d->fd_.get(), 0600);  // an earlier version's file may be 0644
  if (!d->fd_) return Status::fromErrno(errno, "create " + d->partialPath_.string());
  if (::ftruncate(d->fd_.get(), static_cast<off_t>(size)) != 0) {
    return Status::fromErrno(errno, "size " + d->partialPath_.string());
  }
  d->present_.assign((size + kBlockBytes - 1) / kBlockBytes, 0);
  return d;
}

CachedPackData::~CachedPackData() { stop(); }

void CachedPackData::stop() {
  stop_ = true;
  if (background_.joinable()) background_.join();
}

Status CachedPackData::fetchBlocks(uint64_t firstBlock, uint64_t lastBlock) {
  const uint64_t off = firstBlock * kBlockBytes;
  const uint64_t end = std::min<uint64_t>((lastBlock + 1) * kBlockBytes, size_);
  auto bytes =
      source_->readRange(blobName_, static_cast<int64_t>(off), static_cast<int64_t>(end - off));
  if (!bytes)
    return bytes.status().withContext("fetch " + blobName_ + " from " + source_->describe());
  size_t done = 0;
  while (done < bytes->size()) {
    ssize_t w = ::pwrite(fd_.get(), bytes->data() + done, bytes->size() - done,
                         static_cast<off_t>(off + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::fromErrno(errno, "write " + partialPath_.string());
    }
    done += static_cast<size_t>(w);
  }
  fetched_.fetch_add(static_cast<int64_t>(bytes->size()));
  std::lock_guard lock(mu_);
  for (uint64_t b = firstBlock; b <= lastBlock; ++b) present_[b] = 1;
  return Status::ok();
}

Status CachedPackData::read(uint64_t offset, size_t length, char* out) {
  if (offset > size_ || length > size_ - offset) {
    return invalidArgument("corrupt code pack: read past the end of the data file");
  }
  if (length == 0) return Status::ok();
  if (!complete_) {
    const uint64_t first = offset / kBlockBytes, last = (offset + length - 1) / kBlockBytes;
    uint64_t lo = UINT64_MAX, hi = 0;
    {
      std::lock_guard lock(mu_);
      for (uint64_t b = first; b <= last; ++b) {
        if (!present_[b]) {
          lo = std::min(lo, b);
          hi = b;
        }
      }
    }
    if (lo != UINT64_MAX) RETURN_IF_ERROR(fetchBlocks(lo, hi));
  }
  return preadAll(fd_.get(), out, length, offset, "code pack data " + finalPath_.string());
}

void CachedPackData::invalidate(uint64_t offset, size_t length) {
  if (!source_ || length == 0 || offset >= size_) return;
  std::lock_guard lock(mu_);
  const uint64_t last =
      std::min<uint64_t>((offset + length - 1) / kBlockBytes, present_.size() - 1);
  for (uint64_t b = offset / kBlockBytes; b <= last; ++b) present_[b] = 0;
  complete_ = false;
}

Status CachedPackData::downloadAll() {
  if (complete_) return Status::ok();
  const uint64_t blocks = present_.size();
  uint64_t b = 0;
  while (b < blocks) {
    if (stop_) return Status(Code::kAborted, "download of " + blobName_ + " stopped");
    uint64_t lo = 0, hi = 0;
    bool any = false;
    {
      std::lock_guard lock(mu_);
      while (b < blocks && present_[b]) ++b;
      if (b < blocks) {
        any = true;
        lo = hi = b;
        while (hi + 1 < blocks && hi + 1 < lo + kBackgroundBlocks && !present_[hi + 1]) ++hi;
        b = hi + 1;
      }
    }
    if (any) RETURN_IF_ERROR(fetchBlocks(lo, hi));
  }
  return finish();
}

Status CachedPackData::finish() {
  std::lock_guard finishing(finishMu_);
  if (complete_) return Status::ok();
  {
    std::lock_guard lock(mu_);
    for (uint8_t p : present_) {
      if (!p) return unavailable("code pack data " + blobName_ + " is not fully downloaded");
    }
  }
  Sha256Hasher h;
  std::string buf(kBlockBytes, '\0');
  for (uint64_t off = 0; off < size_; off += kBlockBytes) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, size_ - off));
    RETURN_IF_ERROR(preadAll(fd_.get(), buf.data(), n, off, partialPath_.string()));
    h.update(buf.data(), n);
  }
  if (h.finish() != sha256_) {
    std::lock_guard lock(mu_);
    std::fill(present_.begin(), present_.end(), 0);
    return invalidArgument("corrupt code pack: downloaded " + blobName_ +
                           " does not match its SHA-256");
  }
  if (::fsync(fd_.get()) != 0) return Status::fromErrno(errno, "fsync " + partialPath_.string());
  RETURN_IF_ERROR(makeDirs(finalPath_.parent_path(), 0700));
  // link() never replaces: a complete blob of this name is the same bytes.
  if (::link(partialPath_.c_str(), finalPath_.c_str()) != 0 && errno != EEXIST) {
    return Status::fromErrno(errno, "publish " + finalPath_.string());
  }
  ::unlink(partialPath_.c_str());
  complete_ = true;
  return Status::ok();
}

void CachedPackData::startBackground() {
  if (complete_ || background_.joinable()) return;
  background_ = std::thread([this] {
    // The download behind a mount must not slow the cold start it is behind: lowest CPU and
    // best-effort I/O priority for this thread only (both are per-thread on Linux).
    const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19);
    constexpr int kIoprioWhoProcess = 1, kIoprioClassBe = 2, kIoprioClassShift = 13;
    (void)::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid,
                    (kIoprioClassBe << kIoprioClassShift) | 7);
    Status s = downloadAll();
    if (!s && s.code() != Code::kAborted) {
      SLOG_WARN("background download of {}: {}", blobName_, s.toString());
    }
    std::lock_guard lock(mu_);
    finished_ = true;
    result_ = s;
    cv_.notify_all();
  });
}

Status CachedPackData::waitComplete(std::chrono::milliseconds timeout) {
  if (complete_) return Status::ok();
  if (!background_.joinable()) return downloadAll();
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return finished_ || complete_.load(); })) {
    return Status(Code::kDeadlineExceeded, "download of " + blobName_ + " still running");
  }
  if (complete_) return Status::ok();
  return result_;
}

// ---- HostCodeCache --------------------------------------------------------------------------

namespace {

// A directory only this process's user may enter: created 0700, or brought to 0700 and our
// euid/egid if an earlier version (or an operator) left it otherwise.
Status ensurePrivateDir(const std::filesystem::path& dir) {
  RETURN_IF_ERROR(makeDirs(dir, 0700));
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Status::fromErrno(errno, "open " + dir.string());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::fromErrno(errno, "stat " + dir.string());
  if ((st.st_uid != ::geteuid() || st.st_gid != ::getegid()) &&
      ::fchown(fd.get(), ::geteuid(), ::getegid()) != 0) {
    return Status::fromErrno(errno, "chown " + dir.string());
  }
  if ((st.st_mode & 07777) != 0700 && ::fchmod(fd.get(), 0700) != 0) {
    return Status::fromErrno(errno, "chmod 0700 " + dir.string());
  }
  return Status::ok();
}

// Gives the freshly extracted tree at dirFd (in a directory only we can enter, so nobody can
// swap an entry under us) to `owner`: directories 0500, files 0400 or 0500 if executable,
// symlinks chowned without being followed. Children first, so a directory is never made
// unwritable before its contents are done (root would not care, but the order costs nothing).
Status handOverTree(int dirFd, CodeOwner owner, const std::string& what, int depth = 0) {
  if (depth > 256) return invalidArgument("code tree " + what + " is too deep");
  int dupFd = ::fcntl(dirFd, F_DUPFD_CLOEXEC, 0);
  if (dupFd < 0) return Status::fromErrno(errno, "dup fd of " + what);
  DIR* d = ::fdopendir(dupFd);
  if (d == nullptr) {
    int err = errno;
    ::close(dupFd);
    return Status::fromErrno(err, "opendir " + what);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::fromErrno(errno, "stat " + what + "/" + name);
    }
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) return Status::fromErrno(errno, "open " + what + "/" + name);
      RETURN_IF_ERROR(handOverTree(sub.get(), owner, what + "/" + name, depth + 1));
      continue;
    }
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
      return invalidArgument("code tree " + what + "/" + name + " is not a file or a link");
    }
    if (::fchownat(dirFd, name.c_str(), owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::fromErrno(errno, "chown " + what + "/" + name);
    }
    if (S_ISREG(st.st_mode) &&
        ::fchmodat(dirFd, name.c_str(), (st.st_mode & 0111) != 0 ? 0500 : 0400, 0) != 0) {
      return Status::fromErrno(errno, "chmod " + what + "/" + name);
    }
  }
  if (::fchown(dirFd, owner.uid, owner.gid) != 0) return Status::fromErrno(errno, "chown " + what);
  if (::fchmod(dirFd, 0500) != 0) return Status::fromErrno(errno, "chmod " + what);
  return Status::ok();
}

// Removes every "owner-*" directory under root that is empty (after unmounts).
void removeEmptyOwnerDirs(const std::filesystem::path& root) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (e.path().filename().string().rfind("owner-", 0) == 0) ::rmdir(e.path().c_str());
  }
}

}  // namespace

HostCodeCache::HostCodeCache(std::shared_ptr<BlobStore> source, HostCodeCacheOptions options)
    : source_(std::move(source)), options_(std::move(options)) {
  if (options_.mountRoot.empty()) options_.mountRoot = options_.root / "mnt";
  if (options_.treeRoot.empty()) options_.treeRoot = options_.root / "trees";
  local_ = std::make_shared<LocalDirBlobStore>(options_.root / "blobs");
  // Defense in depth: even a uid that left its mount namespace cannot walk to a blob, a partial
  // download or any tree from here (host_cache.h).
  for (const auto& dir : {options_.root, options_.root / "blobs", options_.root / "partial",
                          options_.treeRoot, options_.mountRoot}) {
    if (Status st = ensurePrivateDir(dir); !st) {
      SLOG_WARN("code cache: {} (code stays owner-only, but the directory is not private)",
                st.toString());
    }
  }
  {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(options_.treeRoot, ec)) {
      if (e.path().filename().string().rfind("owner-", 0) == 0) (void)ensurePrivateDir(e.path());
    }
  }
  // A predecessor killed with -9 left its FUSE mounts behind (dead: ENOTCONN) and maybe
  // partial downloads.
  if (int n = unmountUnder(options_.mountRoot); n > 0) {
    SLOG_INFO("unmounted {} stale code pack mount(s) under {}", n, options_.mountRoot.string());
  }
  (void)removeTree(options_.root / "partial");
  (void)ensurePrivateDir(options_.root / "partial");
  removeEmptyOwnerDirs(options_.mountRoot);
  if (options_.useFuse && fuseAvailable()) {
    // Started now rather than at the first mount, so no cold start pays for the fork.
    auto r = MountReaper::start(options_.mountRoot);
    if (r) {
      reaper_ = std::move(*r);
    } else {
      SLOG_WARN("code packs: no mount reaper ({}); will retry at the first mount",
                r.status().toString());
    }
  }
}

HostCodeCache::~HostCodeCache() {
  std::map<std::string, std::shared_ptr<Pack>> packs;
  {
    std::lock_guard lock(mu_);
    packs.swap(packs_);
  }
  for (auto& [sha, p] : packs) {
    std::lock_guard lock(p->mu);
    p->mounts.clear();
    if (p->data) p->data->stop();
  }
  removeEmptyOwnerDirs(options_.mountRoot);
  reaper_.reset();                      // after the unmounts: it finds nothing left and exits
  ::rmdir(options_.mountRoot.c_str());  // only if empty
}

Result<std::string> HostCodeCache::fetchIndex(const std::string& sha) {
  auto local = local_->readAll(packIndexBlob(sha), options_.maxIndexBytes);
  if (local || local.status().code() != Code::kNotFound) return local;
  auto remote = source_->readAll(packIndexBlob(sha), options_.maxIndexBytes);
  if (!remote && remote.status().code() == Code::kNotFound) {
    return notFound("code pack " + sha + " is not in " + source_->describe());
  }
  return remote;
}

namespace {
bool isDirectory(const std::filesystem::path& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

Status HostCodeCache::open(const std::string& sha, Pack& p) {
  if (p.reader) return Status::ok();
  ASSIGN_OR_RETURN(std::string bytes, fetchIndex(sha));
  auto parsedOr = PackIndex::parse(bytes, options_.maxIndexBytes);
  if (!parsedOr && local_->localPath(packIndexBlob(sha))) {
    // The host's copy is damaged (it is written without fsync): drop it, fetch it again.
    SLOG_WARN("code pack {}: local index unusable ({}); fetching it again", sha,
              parsedOr.status().toString());
    RETURN_IF_ERROR(local_->remove(packIndexBlob(sha)));
    ASSIGN_OR_RETURN(bytes, fetchIndex(sha));
    parsedOr = PackIndex::parse(bytes, options_.maxIndexBytes);
  }
  if (!parsedOr) return parsedOr.status();
  PackIndex parsed = std::move(*parsedOr);
  if (!local_->localPath(packIndexBlob(sha))) {
    RETURN_IF_ERROR(local_->putBytes(packIndexBlob(sha), bytes, options_.root / "partial",
                                     /*durable=*/false));
  }
  auto index = std::make_shared<const PackIndex>(std::move(parsed));
  const std::string dataSha = index->dataSha256Hex();
  const std::string dataName = packDataBlob(dataSha);
  const uint64_t dataBytes = index->header().dataBytes;

  std::shared_ptr<CachedPackData> data;
  {
    // Packs with identical contents share one data file, and so one download.
    std::lock_guard lock(mu_);
    data = dataFiles_[dataSha].lock();
  }
  if (!data) {
    if (auto lp = local_->localPath(dataName)) {
      ASSIGN_OR_RETURN(data, CachedPackData::openLocal(*lp, dataBytes));
    } else if (auto sp = source_->localPath(dataName)) {
      ASSIGN_OR_RETURN(data, CachedPackData::openLocal(*sp, dataBytes));
    } else {
      Sha256 want;
      std::memcpy(want.data(), index->header().dataSha256, 32);
      ASSIGN_OR_RETURN(data, CachedPackData::openRemote(
                                 source_, dataName, dataBytes, want,
                                 options_.root / "partial" / (dataSha + "-" + randomHex(4)),
                                 local_->root() / dataName));
    }
    std::lock_guard lock(mu_);
    dataFiles_[dataSha] = data;
  }
  p.index = index;
  p.data = data;
  p.reader = std::make_shared<PackReader>(index, data, 16);
  return Status::ok();
}

Result<std::filesystem::path> HostCodeCache::extractTree(const std::string& sha, Pack& p,
                                                         std::optional<CodeOwner> owner) {
  const auto parent = owner ? options_.treeRoot / codeOwnerDirName(*owner) : options_.treeRoot;
  const auto tree = parent / sha;
  if (isDirectory(tree)) return tree;
  RETURN_IF_ERROR(open(sha, p));
  // Full tier: everything local first, then a plain tree.
  RETURN_IF_ERROR(p.data->downloadAll());
  RETURN_IF_ERROR(ensurePrivateDir(parent));
  const auto tmp = parent / (".tmp-" + randomHex(8));
  RETURN_IF_ERROR(extractPack(*p.reader, tmp));
  if (owner) {
    // Owned before it is published: nobody ever sees the tree at its final path as root's.
    UniqueFd dir(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    Status st = dir ? handOverTree(dir.get(), *owner, tmp.string())
                    : Status::fromErrno(errno, "open " + tmp.string());
    if (!st) {
      (void)removeTree(tmp);
      return st;
    }
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, tree.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    (void)removeTree(tmp);
    if (err != EEXIST && err != ENOTEMPTY) {
      return Status::fromErrno(err, "rename " + tmp.string() + " into " + tree.string());
    }
  }
  return tree;
}

Result<std::filesystem::path> HostCodeCache::load(const std::string& sha, Pack& p,
                                                  CodeOwner owner) {
  if (auto it = p.mounts.find(owner); it != p.mounts.end()) return it->second->mountPoint();
  // Extracted by the full tier (of this or an earlier run) for this owner: local already.
  const auto ownerTree = options_.treeRoot / codeOwnerDirName(owner) / sha;
  if (isDirectory(ownerTree)) return ownerTree;
  if (options_.useFuse && !fuseBroken_) {
    RETURN_IF_ERROR(open(sha, p));
    {
      // Mounts must not outlive this process, even when it is killed with -9.
      std::lock_guard lock(mu_);
      if (!reaper_) {
        auto r = MountReaper::start(options_.mountRoot);
        if (!r) return r.status();
        reaper_ = std::move(*r);
      }
    }
    const auto ownerDir = options_.mountRoot / codeOwnerDirName(owner);
    RETURN_IF_ERROR(ensurePrivateDir(ownerDir));
    auto m = PackMount::mount(p.reader, ownerDir / sha, owner, options_.fuseThreads);
    if (m) {
      auto& mount = p.mounts[owner];
      mount = std::move(*m);
      if (options_.backgroundDownload) p.data->startBackground();
      return mount->mountPoint();
    }
    fuseBroken_ = true;
    SLOG_WARN("code packs: FUSE unusable ({}); falling back to full extraction",
              m.status().toString());
  }
  return extractTree(sha, p, owner);
}

std::shared_ptr<HostCodeCache::Pack> HostCodeCache::slot(const std::string& sha) {
  std::lock_guard lock(mu_);
  auto& s = packs_[sha];
  if (!s) s = std::make_shared<Pack>();
  return s;
}

Result<std::filesystem::path> HostCodeCache::acquire(const std::string& sha, CodeOwner owner) {
  if (!isSha256Hex(sha)) return invalidArgument("not a code sha256: '" + sha + "'");
  std::shared_ptr<Pack> p = slot(sha);
  std::lock_guard lock(p->mu);
  auto r = load(sha, *p, owner);
  if (!r) return r.status().withContext("load code pack " + sha);
  return r;
}

Result<std::filesystem::path> HostCodeCache::extract(const std::string& sha) {
  if (!isSha256Hex(sha)) return invalidArgument("not a code sha256: '" + sha + "'");
  std::shared_ptr<Pack> p = slot(sha);
  std::lock_guard lock(p->mu);
  auto r = extractTree(sha, *p, std::nullopt);
  if (!r) return r.status().withContext("extract code pack " + sha);
  return r;
}

Status HostCodeCache::release(const std::string& sha) {
  if (!isSha256Hex(sha)) return invalidArgument("not a code sha256: '" + sha + "'");
  std::shared_ptr<Pack> p;
  {
    std::lock_guard lock(mu_);
    auto it = packs_.find(sha);
    if (it != packs_.end()) {
      p = it->second;
      packs_.erase(it);
    }
  }
  if (p) {
    std::lock_guard lock(p->mu);
    p->mounts.clear();
    if (p->data && p->data.use_count() == 1) p->data->stop();
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(options_.treeRoot, ec)) {
    if (e.path().filename().string().rfind("owner-", 0) == 0) {
      RETURN_IF_ERROR(removeTree(e.path() / sha));
    }
  }
  return removeTree(options_.treeRoot / sha);
}

Status HostCodeCache::waitLocal(const std::string& sha, std::chrono::milliseconds timeout) {
  std::shared_ptr<Pack> p;
  {
    std::lock_guard lock(mu_);
    auto it = packs_.find(sha);
    if (it == packs_.end()) return notFound("code pack " + sha + " is not loaded on this host");
    p = it->second;
  }
  std::shared_ptr<CachedPackData> data;
  {
    std::lock_guard plock(p->mu);  // never under mu_: acquire() takes p->mu, then mu_
    data = p->data;
  }
  if (!data) return Status::ok();  // an extracted tree: local by definition
  return data->waitComplete(timeout);
}

bool HostCodeCache::mounted(const std::string& sha) {
  std::shared_ptr<Pack> p;
  {
    std::lock_guard lock(mu_);
    auto it = packs_.find(sha);
    if (it == packs_.end()) return false;
    p = it->second;
  }
  std::lock_guard plock(p->mu);
  return !p->mounts.empty();
}

}  // namespace stratus
