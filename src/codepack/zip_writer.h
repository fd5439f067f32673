// Zip writing (libarchive's zip writer), the other half of zip_import.h: the CLI zips a function's
// directory in memory for `stratus deploy`, and tests build hostile archives entry by entry.
// ZipWriter is single-threaded; zipDirectory is stateless and thread-safe.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

struct archive;

namespace stratus {

class ZipWriter {
 public:
  ZipWriter();
  ~ZipWriter();
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  // Paths are written exactly as given (no normalisation), so tests can write "../x".
  Status addFile(std::string_view path, std::string_view data, mode_t perm = 0644);
  Status addDirectory(std::string_view path, mode_t perm = 0755);
  Status addSymlink(std::string_view path, std::string_view target);
  // An entry carrying a hard-link target (how libarchive represents hard links).
  Status addHardlink(std::string_view path, std::string_view target);
  // Closes the archive and returns its bytes; the writer is unusable afterwards.
  Result<std::string> finish();

 private:
  Status addEntry(std::string_view path, mode_t type, mode_t perm, std::string_view data,
                  std::string_view link, bool hard);
  struct Sink;
  std::unique_ptr<Sink> sink_;
  archive* a_ = nullptr;
  Status error_;
};

// Zips every file, directory and symlink under dir (paths relative to dir, executable bits kept,
// nothing skipped). Other file types (sockets, fifos, devices) are an error naming the path.
Result<std::string> zipDirectory(const std::filesystem::path& dir);

}  // namespace stratus
