// Small filesystem helpers that return Status instead of throwing. Thread-safe (no shared state).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"

namespace stratus {

Result<std::string> readFile(const std::filesystem::path& path);
// Writes via a temporary file + fsync + rename, so readers see the old or the new content.
Status writeFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode = 0644);
// Writes without truncating semantics beyond O_TRUNC; for cgroupfs/procfs control files.
Status writeControlFile(const std::filesystem::path& path, std::string_view data);
// mkdir -p. Directories it creates get `mode` (umask ignored); existing ones are left as they are.
Status makeDirs(const std::filesystem::path& path, mode_t mode = 0755);
// rm -rf; an absent path is OK.
Status removeTree(const std::filesystem::path& path);

}  // namespace stratus
