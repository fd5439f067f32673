#include "sandbox/code_mount.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "common/unique_fd.h"

namespace stratus {

Status attachDirectoryReadOnly(int mntNsFd, const std::filesystem::path& hostDir,
                               const std::string& target) {
  if (target.empty() || target[0] != '/') {
    return invalidArgument("attach " + hostDir.string() + ": target must be absolute");
  }
  // A detached copy of the directory's mount subtree, resolved in *our* namespace (as the
  // original bind with MS_REC would have been).
  UniqueFd tree(
      ::open_tree(AT_FDCWD, hostDir.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (!tree) return Status::fromErrno(errno, "open_tree " + hostDir.string());
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.propagation = MS_PRIVATE;
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return Status::fromErrno(errno, "make the copy of " + hostDir.string() + " read-only");
  }
  Status status;
  std::thread t([&] {
    // Threads share their fs context (root, cwd) with the process; setns(CLONE_NEWNS) refuses a
    // shared one. This thread's own copy dies with it.
    if (::unshare(CLONE_FS) != 0) {
      status = Status::fromErrno(errno, "unshare(CLONE_FS)");
      return;
    }
    if (::setns(mntNsFd, CLONE_NEWNS) != 0) {
      status = Status::fromErrno(errno, "setns into the sandbox's mount namespace");
      return;
    }
    // After setns the thread's root is the namespace's root: the sandbox's pivoted root.
    if (::move_mount(tree.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      status = Status::fromErrno(errno, "move_mount " + hostDir.string() + " onto " + target);
    }
  });
  t.join();
  return status;
}

}  // namespace stratus
