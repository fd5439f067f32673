#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codepack/zip_import.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/log.h"

namespace stratus {
namespace {

std::string metaToJson(const ImportedCode& info, const std::string& dataSha) {
  json::object o;
  o["sha256"] = info.sha256;
  o["zippedBytes"] = info.zippedBytes;
  o["unpackedBytes"] = info.unpackedBytes;
  o["files"] = info.files;
  o["dataSha256"] = dataSha;
  return json::serialize(o);
}

Result<ImportedCode> metaFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(json::value v, parseJson(text));
  if (!v.is_object()) return invalidArgument("code metadata is not a JSON object");
  const json::object& o = v.as_object();
  ImportedCode info;
  ASSIGN_OR_RETURN(auto sha, getString(o, "sha256"));
  ASSIGN_OR_RETURN(auto zipped, getInt(o, "zippedBytes"));
  ASSIGN_OR_RETURN(auto unpacked, getInt(o, "unpackedBytes"));
  ASSIGN_OR_RETURN(auto files, getInt(o, "files"));
  if (!sha || !zipped || !unpacked || !files) return invalidArgument("code metadata incomplete");
  info.sha256 = *sha;
  info.zippedBytes = *zipped;
  info.unpackedBytes = *unpacked;
  info.files = *files;
  return info;
}

}  // namespace

std::filesystem::path defaultMountRoot(const std::filesystem::path& root) {
  const std::string key = std::filesystem::absolute(root).lexically_normal().string();
  return std::filesystem::path("/run/stratus/codepack") / sha256Hex(key).substr(0, 16);
}

CodeCache::CodeCache(std::filesystem::path root, CodeCacheOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  origin_ =
      options_.origin ? options_.origin : std::make_shared<LocalDirBlobStore>(root_ / "blobs");
  // The host cache shares the origin's directory: in one process the pack is local already, so
  // nothing is downloaded, and extracted trees stay where earlier versions put them.
  HostCodeCacheOptions h;
  h.root = root_;
  h.mountRoot = options_.mountRoot.empty() ? defaultMountRoot(root_) : options_.mountRoot;
  h.treeRoot = root_;
  h.useFuse = options_.useFuse;
  host_ = std::make_unique<HostCodeCache>(origin_, h);
}

CodeCache::~CodeCache() = default;

bool CodeCache::contains(const std::string& sha256) const {
  if (!isSha256Hex(sha256)) return false;
  if (origin_->size(packIndexBlob(sha256))) return true;
  struct stat st;
  return ::lstat((root_ / sha256).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Order of writes: data file, index, metadata. A visible index always has its data, and the
// metadata (what install returns) is written last, so a crash in between just means the next
// install of the same zip redoes the (idempotent) work.
Result<ImportedCode> CodeCache::install(std::string_view zip, const ZipLimits& limits) {
  if (static_cast<int64_t>(zip.size()) > limits.maxZippedBytes) {
    return Status(Code::kPayloadTooLarge,
                  "code.zipFile is " + std::to_string(zip.size()) + " bytes, over the " +
                      std::to_string(limits.maxZippedBytes) + "-byte limit (maxZippedBytes)");
  }
  const std::string sha = sha256Hex(zip);
  const std::filesystem::path meta = root_ / (sha + ".json");
  if (contains(sha)) {
    if (auto text = readFile(meta); text.isOk()) {
      if (auto info = metaFromJson(*text); info.isOk()) return info;
    }
  }
  RETURN_IF_ERROR(makeDirs(root_, 0700));
  const std::string tag = randomHex(8);
  const std::filesystem::path tmpTree = root_ / (".tmp-" + tag);
  const std::filesystem::path tmpData = root_ / (".tmp-" + tag + ".data");
  ASSIGN_OR_RETURN(ImportedCode info, importZip(zip, tmpTree, limits));
  auto packed = writePack(tmpTree, tmpData, options_.pack);
  (void)removeTree(tmpTree);
  if (!packed) return packed.status().withContext("build code pack");
  Status st = origin_->putFile(packDataBlob(packed->dataSha256), tmpData);
  ::unlink(tmpData.c_str());
  if (st) st = origin_->putBytes(packIndexBlob(sha), packed->index, root_);
  const std::filesystem::path tmpMeta = root_ / (".tmp-" + tag + ".json");
  if (st) st = writeFileAtomic(tmpMeta, metaToJson(info, packed->dataSha256), 0644);
  if (st && ::rename(tmpMeta.c_str(), meta.c_str()) != 0) {
    st = Status::fromErrno(errno, "rename " + tmpMeta.string() + " to " + meta.string());
  }
  if (!st) {
    ::unlink(tmpMeta.c_str());
    return st;
  }
  return info;
}

Result<std::filesystem::path> CodeCache::acquire(const std::string& sha256, CodeOwner owner) {
  return host_->acquire(sha256, owner);
}

std::filesystem::path CodeCache::pathFor(const std::string& sha256) {
  auto p = host_->extract(sha256);
  if (p) return *p;
  SLOG_ERROR("code {}: {}", sha256, p.status().toString());
  return root_ / sha256;
}

Status CodeCache::remove(const std::string& sha256) {
  if (!isSha256Hex(sha256)) return invalidArgument("not a code sha256: '" + sha256 + "'");
  RETURN_IF_ERROR(host_->release(sha256));
  if (auto* local = dynamic_cast<LocalDirBlobStore*>(origin_.get())) {
    RETURN_IF_ERROR(local->remove(packIndexBlob(sha256)));
  }
  if (::unlink((root_ / (sha256 + ".json")).c_str()) != 0 && errno != ENOENT) {
    return Status::fromErrno(errno, "remove code metadata " + sha256);
  }
  return Status::ok();
}

}  // namespace stratus
