// PackMount: a read-only FUSE filesystem (libfuse3 low-level API) showing one code pack's tree,
// serving each read from a PackReader, i.e. by range from wherever the pack's data file is
// (host cache, peer, origin). This is the "lazy" tier of seed 2.4: the runtime sees /code at
// once and pays only for the chunks it touches. One mount per (owner, pack) per host; every
// sandbox of that owner (a tenant's host uid) with that code bind-mounts it.
//
// Every entry belongs to the mount's CodeOwner: directories 0500, files 0400 (0500 when the
// pack marks them executable), whatever the zip said; nobody else may read anything. Mounted
// with allow_other (the reader is a sandbox's uid, not the mounting root) and
// default_permissions (the kernel checks those owners and modes on every access, so another
// tenant's uid gets EACCES even if it could name the path), long entry/attribute timeouts and
// keep_cache: a pack never changes, so the kernel caches names, attributes and pages for good.
// Served by a few threads of our own that poll the FUSE fd and a stop eventfd, so that the
// destructor can stop them without waiting for a request. The destructor unmounts (lazily:
// a sandbox still holding a bind mount keeps working until the session closes, then gets
// ENOTCONN). Needs /dev/fuse and CAP_SYS_ADMIN (we run as root); mount() reports otherwise.
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "codepack/pack_reader.h"
#include "common/status.h"
#include "common/unique_fd.h"

struct fuse_session;

namespace stratus {

// Who a copy of a pack's tree on this host belongs to: the host uid/gid that the sandboxes
// reading it run their command as (with user namespaces, the tenant's range base + 65534).
struct CodeOwner {
  uid_t uid = 65534;
  gid_t gid = 65534;
  auto operator<=>(const CodeOwner&) const = default;
};

class PackMount {
 public:
  static Result<std::unique_ptr<PackMount>> mount(std::shared_ptr<PackReader> reader,
                                                  const std::filesystem::path& mountPoint,
                                                  CodeOwner owner, int threads = 2);
  ~PackMount();
  PackMount(const PackMount&) = delete;
  PackMount& operator=(const PackMount&) = delete;

  const std::filesystem::path& mountPoint() const { return mountPoint_; }
  PackReader& reader() { return *reader_; }
  CodeOwner owner() const { return owner_; }

 private:
  PackMount(std::shared_ptr<PackReader> reader, std::filesystem::path mountPoint, CodeOwner owner)
      : reader_(std::move(reader)), mountPoint_(std::move(mountPoint)), owner_(owner) {}
  void serve();

  std::shared_ptr<PackReader> reader_;
  std::filesystem::path mountPoint_;
  CodeOwner owner_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  UniqueFd stop_;  // eventfd
  std::vector<std::thread> threads_;
};

// True when this host can mount FUSE filesystems (/dev/fuse opens read-write).
bool fuseAvailable();

// MountReaper: a small child process that lazily unmounts everything under `root` once this
// process is gone (kill -9 included: the FUSE session dies with us, but its mount would stay
// behind, answering ENOTCONN). It waits for EOF on a pipe whose only writer is this process
// (O_CLOEXEC; forked-but-not-exec'd children keep it open too, and those die with us), then
// parses /proc/self/mountinfo with no allocation and calls umount2(MNT_DETACH). The destructor
// (normal shutdown, after the owner unmounted) closes the pipe and reaps the child.
class MountReaper {
 public:
  static Result<std::unique_ptr<MountReaper>> start(const std::filesystem::path& root);
  ~MountReaper();
  MountReaper(const MountReaper&) = delete;
  MountReaper& operator=(const MountReaper&) = delete;
  pid_t pid() const { return pid_; }

 private:
  MountReaper(pid_t pid, int writeFd) : pid_(pid), writeFd_(writeFd) {}
  pid_t pid_;
  UniqueFd writeFd_;
};

// Lazily unmounts every mount whose mount point is under `root` (left by a process killed with
// -9: its FUSE session died with it and the mount answers ENOTCONN). Returns how many.
int unmountUnder(const std::filesystem::path& root);

}  // namespace stratus
