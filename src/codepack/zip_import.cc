#include "codepack/zip_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "codepack/pack_format.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/unique_fd.h"

namespace stratus {
namespace {

// Small entries compress absurdly well (a 10 KB file of zeros is ~30 bytes deflated), so the
// ratio check only applies once an entry has produced this much output; the total-size limit
// still covers everything.
constexpr int64_t kRatioFloorBytes = 1 << 20;
constexpr size_t kCopyChunk = 64 * 1024;

Status tooLarge(std::string m) { return {Code::kPayloadTooLarge, std::move(m)}; }

Status notAZip(std::string_view why) {
  return invalidArgument("code.zipFile is not a valid zip archive: " + std::string(why));
}

uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// What libarchive does not tell us, read from the zip's central directory: each entry's
// compressed size (for the per-entry ratio check) and whether any name holds a NUL byte
// (libarchive hands names out as C strings, so "a\0/../../x" would silently become "a").
// Best effort: anything it cannot parse (zip64, damaged directory) is left to libarchive.
struct CentralDirectory {
  bool foundEnd = false;  // end-of-central-directory record present
  std::map<std::string, int64_t> compressedSize;
  std::optional<std::string> nameWithNul;
};

CentralDirectory scanCentralDirectory(std::string_view zip) {
  CentralDirectory cd;
  const auto* b = reinterpret_cast<const unsigned char*>(zip.data());
  const size_t n = zip.size();
  if (n < 22) return cd;
  // End of central directory record: 22 bytes + a comment of up to 65535 bytes.
  size_t eocd = std::string_view::npos;
  size_t lowest = n > 22 + 65535 ? n - 22 - 65535 : 0;
  for (size_t i = n - 22 + 1; i-- > lowest;) {
    if (le32(b + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string_view::npos) return cd;
  cd.foundEnd = true;
  uint32_t entries = le16(b + eocd + 10);
  uint32_t cdOffset = le32(b + eocd + 16);
  if (cdOffset == 0xFFFFFFFFu || cdOffset >= n) return cd;
  size_t p = cdOffset;
  for (uint32_t e = 0; e < entries; ++e) {
    if (p + 46 > n || le32(b + p) != 0x02014b50) return cd;
    uint32_t csize = le32(b + p + 20);
    size_t nameLen = le16(b + p + 28), extraLen = le16(b + p + 30), commentLen = le16(b + p + 32);
    if (p + 46 + nameLen > n) return cd;
    std::string name(reinterpret_cast<const char*>(b + p + 46), nameLen);
    if (name.find('\0') != std::string::npos) {
      std::string shown = name;
      for (char& c : shown) {
        if (c == '\0') c = '?';
      }
      cd.nameWithNul = shown;
    } else if (csize != 0xFFFFFFFFu) {
      cd.compressedSize[name] = csize;
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  return cd;
}

// Splits an archive path into components, dropping "" and "."; nullopt if any is "..".
std::optional<std::vector<std::string>> safeComponents(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view c = path.substr(i, j - i);
    if (c == "..") return std::nullopt;
    if (!c.empty() && c != ".") out.emplace_back(c);
    i = j + 1;
  }
  return out;
}

std::string describeType(mode_t type) {
  switch (type) {
    case AE_IFCHR:
      return "a character device";
    case AE_IFBLK:
      return "a block device";
    case AE_IFIFO:
      return "a fifo";
    case AE_IFSOCK:
      return "a socket";
    default:
      return "of an unsupported type";
  }
}

struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchiveReader = std::unique_ptr<archive, ArchiveReadDeleter>;

std::string archiveError(archive* a) {
  const char* m = archive_error_string(a);
  return m ? m : "unknown libarchive error";
}

class Extractor {
 public:
  Extractor(int rootFd, const ZipLimits& limits, CentralDirectory cd)
      : rootFd_(rootFd), limits_(limits), cd_(std::move(cd)) {}

  Status run(std::string_view zip, ImportedCode& info) {
    ArchiveReader a(archive_read_new());
    if (!a) return internalError("archive_read_new failed");
    archive_read_support_format_zip(a.get());
    if (archive_read_open_memory(a.get(), zip.data(), zip.size()) != ARCHIVE_OK) {
      return notAZip(archiveError(a.get()));
    }
    int64_t entries = 0;
    for (;;) {
      archive_entry* entry = nullptr;
      int r = archive_read_next_header(a.get(), &entry);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return notAZip(archiveError(a.get()));
      if (++entries > limits_.maxEntries) {
        return tooLarge("code.zipFile has more than " + std::to_string(limits_.maxEntries) +
                        " entries (limit maxEntries)");
      }
      RETURN_IF_ERROR(extractEntry(a.get(), entry, info));
    }
    info.unpackedBytes = total_;
    return Status::ok();
  }

 private:
  Status extractEntry(archive* a, archive_entry* entry, ImportedCode& info) {
    const char* raw = archive_entry_pathname(entry);
    std::string name = raw ? raw : "";
    if (name.empty()) return invalidArgument("zip entry with an empty name");
    if (name.front() == '/')
      return invalidArgument("zip entry '" + name + "' has an absolute path");
    auto comps = safeComponents(name);
    if (!comps) return invalidArgument("zip entry '" + name + "' has a '..' component");
    for (const std::string& c : *comps) {
      if (c.size() > NAME_MAX) {
        return invalidArgument("zip entry '" + name + "' has a name component longer than " +
                               std::to_string(NAME_MAX) + " bytes");
      }
    }
    if (archive_entry_hardlink(entry) != nullptr) {
      return invalidArgument("zip entry '" + name + "' is a hard link");
    }
    const mode_t type = archive_entry_filetype(entry);
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
      return invalidArgument("zip entry '" + name + "' is " + describeType(type));
    }
    if (comps->empty()) {
      if (type == AE_IFDIR) return Status::ok();  // "./": the root itself
      return invalidArgument("zip entry '" + name + "' has an empty name");
    }

    const std::string leaf = comps->back();
    comps->pop_back();
    ASSIGN_OR_RETURN(UniqueFd parent, openParent(*comps, name));

    if (type == AE_IFDIR) {
      if (::mkdirat(parent.get(), leaf.c_str(), 0755) != 0) {
        if (errno != EEXIST) return Status::fromErrno(errno, "mkdir for zip entry '" + name + "'");
        struct stat st;
        if (::fstatat(parent.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(st.st_mode)) {
          return invalidArgument("zip entry '" + name +
                                 "' is a directory but a file of that name "
                                 "is already in the archive");
        }
        return Status::ok();
      }
      if (::fchmodat(parent.get(), leaf.c_str(), 0755, 0) != 0) {
        return Status::fromErrno(errno, "chmod zip entry '" + name + "'");
      }
      return Status::ok();
    }

    if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      std::string t = target ? target : "";
      RETURN_IF_ERROR(checkSymlinkTarget(name, t, comps->size()));
      if (::symlinkat(t.c_str(), parent.get(), leaf.c_str()) != 0) {
        if (errno == EEXIST) return duplicate(name);
        return Status::fromErrno(errno, "symlink for zip entry '" + name + "'");
      }
      total_ += static_cast<int64_t>(t.size());
      return checkTotal();
    }

    const mode_t mode = (archive_entry_perm(entry) & 0111) ? 0755 : 0644;
    UniqueFd fd(::openat(parent.get(), leaf.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd) {
      if (errno == EEXIST) return duplicate(name);
      return Status::fromErrno(errno, "create file for zip entry '" + name + "'");
    }
    if (::fchmod(fd.get(), mode) != 0) {
      return Status::fromErrno(errno, "chmod zip entry '" + name + "'");
    }
    std::optional<int64_t> compressed;
    if (auto it = cd_.compressedSize.find(name); it != cd_.compressedSize.end()) {
      compressed = it->second;
    }
    int64_t written = 0;
    std::vector<char> buf(kCopyChunk);
    for (;;) {
      la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
      if (n < 0) return notAZip("entry '" + name + "': " + archiveError(a));
      if (n == 0) break;
      written += n;
      total_ += n;
      RETURN_IF_ERROR(checkTotal());
      if (compressed && written > kRatioFloorBytes &&
          written / std::max<int64_t>(*compressed, 1) > limits_.maxCompressionRatio) {
        return tooLarge("zip entry '" + name + "' expands more than " +
                        std::to_string(limits_.maxCompressionRatio) +
                        "x its compressed size (limit maxCompressionRatio)");
      }
      size_t off = 0;
      while (off < static_cast<size_t>(n)) {
        ssize_t w = ::write(fd.get(), buf.data() + off, static_cast<size_t>(n) - off);
        if (w < 0) {
          if (errno == EINTR) continue;
          return Status::fromErrno(errno, "write zip entry '" + name + "'");
        }
        off += static_cast<size_t>(w);
      }
    }
    info.files += 1;
    return Status::ok();
  }

  // Walks (and creates) the directories above an entry one openat at a time, never following a
  // symlink: an archive that plants "lib -> somewhere" and then writes "lib/x" is refused here.
  Result<UniqueFd> openParent(const std::vector<std::string>& dirs, const std::string& name) {
    UniqueFd cur(::fcntl(rootFd_, F_DUPFD_CLOEXEC, 0));
    if (!cur) return Status::fromErrno(errno, "dup code root fd");
    for (const std::string& d : dirs) {
      int fd = ::openat(cur.get(), d.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        if (::mkdirat(cur.get(), d.c_str(), 0755) != 0 && errno != EEXIST) {
          return Status::fromErrno(errno, "mkdir for zip entry '" + name + "'");
        }
        fd = ::openat(cur.get(), d.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && ::fchmod(fd, 0755) != 0) {
          int err = errno;
          ::close(fd);
          return Status::fromErrno(err, "chmod directory for zip entry '" + name + "'");
        }
      }
      if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) {
          return invalidArgument("zip entry '" + name + "' passes through '" + d +
                                 "', which is a symlink or a file in the archive");
        }
        return Status::fromErrno(errno, "open directory for zip entry '" + name + "'");
      }
      cur.reset(fd);
    }
    return cur;
  }

  // Counts bytes actually written, not the sizes the headers claim.
  Status checkTotal() const {
    if (total_ > limits_.maxUnpackedBytes) {
      return tooLarge("code.zipFile unpacks to more than " +
                      std::to_string(limits_.maxUnpackedBytes) + " bytes (limit maxUnpackedBytes)");
    }
    return Status::ok();
  }

  Status duplicate(const std::string& name) {
    return invalidArgument("zip entry '" + name + "' appears more than once");
  }

  int rootFd_;
  const ZipLimits& limits_;
  CentralDirectory cd_;
  int64_t total_ = 0;  // bytes written so far, all entries
};

}  // namespace

Result<ImportedCode> importZip(std::string_view zip, const std::filesystem::path& destDir,
                               const ZipLimits& limits) {
  if (static_cast<int64_t>(zip.size()) > limits.maxZippedBytes) {
    return tooLarge("code.zipFile is " + std::to_string(zip.size()) + " bytes, over the " +
                    std::to_string(limits.maxZippedBytes) + "-byte limit (maxZippedBytes)");
  }
  if (zip.size() < 22)
    return notAZip("too short to be a zip (" + std::to_string(zip.size()) + " bytes)");
  CentralDirectory cd = scanCentralDirectory(zip);
  // Without the end record libarchive would fall back to streaming the local headers and
  // happily extract a zip whose tail (central directory) was cut off.
  if (!cd.foundEnd) return notAZip("no end of central directory record (truncated?)");
  if (cd.nameWithNul) {
    return invalidArgument("zip entry '" + *cd.nameWithNul + "' has a NUL byte in its name");
  }
  ImportedCode info;
  info.sha256 = sha256Hex(zip);
  info.zippedBytes = static_cast<int64_t>(zip.size());

  if (destDir.has_parent_path()) RETURN_IF_ERROR(makeDirs(destDir.parent_path()));
  if (::mkdir(destDir.c_str(), 0755) != 0) {
    return Status::fromErrno(errno, "create code directory " + destDir.string());
  }
  Status st = [&]() -> Status {
    if (::chmod(destDir.c_str(), 0755) != 0) {
      return Status::fromErrno(errno, "chmod " + destDir.string());
    }
    UniqueFd root(::open(destDir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) return Status::fromErrno(errno, "open " + destDir.string());
    Extractor ex(root.get(), limits, std::move(cd));
    return ex.run(zip, info);
  }();
  if (!st.isOk()) {
    (void)removeTree(destDir);
    return st;
  }
  return info;
}

}  // namespace stratus
