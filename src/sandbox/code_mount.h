// Delayed code mount: attaches a host directory, read-only, at a path inside an already running
// sandbox's mount namespace (issue 4: a pre-warmed blank sandbox gets its function's code when a
// call arrives).
//
// How: open_tree(OPEN_TREE_CLONE) makes a detached copy of the host directory's mount in the
// caller's (host) namespace, mount_setattr makes it read-only/nosuid/nodev and private, and a
// short-lived thread that has unshared its fs context (a thread sharing CLONE_FS cannot change
// mount namespace) setns()es into the sandbox's mount namespace and move_mount()s the copy onto
// the target. Nothing is mounted in the host's namespace and nothing propagates back out: the
// sandbox's mount tree is private. The sandboxed process needs no capability and does nothing.
//
// Thread-safety: stateless; safe from any thread. Takes ~0.1 ms.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "common/status.h"

namespace stratus {

// mntNsFd: an fd of /proc/<pid>/ns/mnt of a process inside the sandbox. target: absolute path
// inside the sandbox; must be an existing directory there. hostDir: an existing host directory.
Status attachDirectoryReadOnly(int mntNsFd, const std::filesystem::path& hostDir,
                               const std::string& target);

}  // namespace stratus
