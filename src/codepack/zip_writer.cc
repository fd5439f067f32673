#include "codepack/zip_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "common/fs.h"

namespace stratus {

struct ZipWriter::Sink {
  std::string out;
  static la_ssize_t write(archive*, void* self, const void* buf, size_t n) {
    static_cast<Sink*>(self)->out.append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
};

ZipWriter::ZipWriter() : sink_(std::make_unique<Sink>()), a_(archive_write_new()) {
  // bytes_in_last_block 1: libarchive otherwise pads the output to 10 KiB blocks (a tape habit).
  if (archive_write_set_format_zip(a_) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a_, 1) != ARCHIVE_OK ||
      archive_write_open(a_, sink_.get(), nullptr, &Sink::write, nullptr) != ARCHIVE_OK) {
    error_ = internalError(std::string("zip writer: ") + archive_error_string(a_));
  }
}

ZipWriter::~ZipWriter() {
  if (a_) archive_write_free(a_);
}

Status ZipWriter::addEntry(std::string_view path, mode_t type, mode_t perm, std::string_view data,
                           std::string_view link, bool hard) {
  RETURN_IF_ERROR(error_);
  if (!a_) return internalError("zip writer already finished");
  archive_entry* e = archive_entry_new();
  std::string p(path);
  archive_entry_set_pathname(e, p.c_str());
  archive_entry_set_filetype(e, type);
  archive_entry_set_perm(e, perm);
  archive_entry_set_mtime(e, 1700000000, 0);
  std::string l(link);
  if (hard) {
    archive_entry_set_hardlink(e, l.c_str());
  } else if (type == AE_IFLNK) {
    archive_entry_set_symlink(e, l.c_str());
  }
  archive_entry_set_size(e, type == AE_IFREG ? static_cast<la_int64_t>(data.size()) : 0);
  int r = archive_write_header(a_, e);
  archive_entry_free(e);
  if (r < ARCHIVE_WARN) {
    return internalError("zip entry '" + p + "': " + archive_error_string(a_));
  }
  if (!data.empty() &&
      archive_write_data(a_, data.data(), data.size()) != static_cast<la_ssize_t>(data.size())) {
    return internalError("zip entry '" + p + "' data: " + archive_error_string(a_));
  }
  return Status::ok();
}

Status ZipWriter::addFile(std::string_view path, std::string_view data, mode_t perm) {
  return addEntry(path, AE_IFREG, perm, data, {}, false);
}
Status ZipWriter::addDirectory(std::string_view path, mode_t perm) {
  return addEntry(path, AE_IFDIR, perm, {}, {}, false);
}
Status ZipWriter::addSymlink(std::string_view path, std::string_view target) {
  return addEntry(path, AE_IFLNK, 0777, {}, target, false);
}
Status ZipWriter::addHardlink(std::string_view path, std::string_view target) {
  return addEntry(path, AE_IFREG, 0644, {}, target, true);
}

Result<std::string> ZipWriter::finish() {
  RETURN_IF_ERROR(error_);
  if (!a_) return internalError("zip writer already finished");
  int r = archive_write_close(a_);
  std::string err = r == ARCHIVE_OK ? "" : archive_error_string(a_);
  archive_write_free(a_);
  a_ = nullptr;
  if (r != ARCHIVE_OK) return internalError("finish zip: " + err);
  return std::move(sink_->out);
}

Result<std::string> zipDirectory(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return invalidArgument(dir.string() + " is not a directory");
  // Sorted, so the same tree always gives the same zip (and the same code sha256).
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    paths.push_back(it->path());
  }
  if (ec) return Status::fromErrno(ec.value(), "list " + dir.string());
  std::sort(paths.begin(), paths.end());
  ZipWriter w;
  for (const fs::path& p : paths) {
    const std::string rel = p.lexically_relative(dir).generic_string();
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return Status::fromErrno(errno, "stat " + p.string());
    if (S_ISDIR(st.st_mode)) {
      RETURN_IF_ERROR(w.addDirectory(rel + "/", st.st_mode & 0777));
    } else if (S_ISREG(st.st_mode)) {
      ASSIGN_OR_RETURN(std::string data, readFile(p));
      RETURN_IF_ERROR(w.addFile(rel, data, st.st_mode & 0777));
    } else if (S_ISLNK(st.st_mode)) {
      std::error_code lec;
      fs::path target = fs::read_symlink(p, lec);
      if (lec) return Status::fromErrno(lec.value(), "readlink " + p.string());
      RETURN_IF_ERROR(w.addSymlink(rel, target.string()));
    } else {
      return invalidArgument(p.string() + " is not a file, directory or symlink; cannot zip it");
    }
  }
  return w.finish();
}

}  // namespace stratus
