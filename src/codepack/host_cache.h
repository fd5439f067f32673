// Worker side of code packs (seed 2.4, two tiers): HostCodeCache turns a pack name (the zip's
// sha256, FunctionSpec::codeSha256) and an owner into a directory the sandbox can bind-mount at
// /code.
//
//   * Lazy tier (FUSE available, the default): fetch the small index, mount a PackMount at
//     mountRoot/owner-<uid>-<gid>/<sha> and return at once. Reads are served by range from the
//     source (peers, then origin) while a background thread downloads the whole data file into
//     the host cache; once it is local and its SHA-256 checks out, every read is local. One
//     mount per (owner, pack) per host, shared by every instance of that owner with that code.
//   * Full tier (no FUSE, or useFuse=false): download the whole data file, then extract it to
//     treeRoot/owner-<uid>-<gid>/<sha>.
//
// Ownership (issue 3): the tree a caller gets belongs to its CodeOwner -- the host uid/gid the
// sandbox's command runs as, i.e. the tenant's -- directories 0500, files 0400 (0500 if
// executable), so no other uid (another tenant's range, nobody) can list or read it even given
// the path. Full tier: chowned and chmodded before the rename that publishes it. Lazy tier: the
// FUSE view reports that owner and those modes and the kernel enforces them. Two owners with the
// same code get two trees/mounts; the data file underneath stays one, shared.
// Everything under root, treeRoot and mountRoot other than those trees is root's alone: the
// constructor makes root, root/blobs, root/partial, treeRoot, mountRoot and each owner-* directory
// 0700 owned by this process's euid (also when an earlier version left them 0755), so no
// sandbox uid can even traverse to a blob, a partial download, or another owner's tree. Data
// files and indexes are 0600. Sandboxes reach their own tree only through the bind mount.
//
// The host cache directory (`blobs/` under root) holds complete, verified blobs only, so a
// BlobServer over localStore() serves peers exactly what this host holds.
// The destructor unmounts every pack and stops every download; the constructor lazily unmounts
// whatever a killed predecessor left under mountRoot. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "codepack/blob_store.h"
#include "codepack/pack_format.h"
#include "codepack/pack_fuse.h"
#include "codepack/pack_reader.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace stratus {

inline std::string packIndexBlob(const std::string& sha) { return "packs/" + sha + ".index"; }
inline std::string packDataBlob(const std::string& dataSha) { return "data/" + dataSha; }

// A pack's data file on this host: complete (a local file) or being downloaded (a sparse
// partial file plus a bitmap of the 256 KiB blocks present). Reads of missing blocks fetch them
// from the source by range and keep them. Thread-safe.
class CachedPackData : public PackDataSource {
 public:
  // A cold read of a small file fetches one block: small enough to cost little on a slow
  // link, large enough that the bitmap of a 500 MB pack stays tiny.
  static constexpr uint64_t kBlockBytes = 256 << 10;

  static Result<std::shared_ptr<CachedPackData>> openLocal(const std::filesystem::path& file,
                                                           uint64_t size);
  // partialPath is created (or reused); on completion the verified file is linked to finalPath.
  static Result<std::shared_ptr<CachedPackData>> openRemote(std::shared_ptr<BlobStore> source,
                                                            std::string blobName, uint64_t size,
                                                            Sha256 sha256,
                                                            std::filesystem::path partialPath,
                                                            std::filesystem::path finalPath);
  ~CachedPackData() override;

  Status read(uint64_t offset, size_t length, char* out) override;
  void invalidate(uint64_t offset, size_t length) override;

  // Fetches every missing block (large ranges), verifies the whole file and publishes it at
  // finalPath. Idempotent; returns early (kAborted) once stop() was called.
  Status downloadAll();
  void startBackground();
  void stop();  // stops and joins the background download
  bool complete() const { return complete_.load(); }
  // Waits for the background download to finish; its result.
  Status waitComplete(std::chrono::milliseconds timeout);
  int64_t bytesFetched() const { return fetched_.load(); }

 private:
  CachedPackData() = default;
  Status fetchBlocks(uint64_t firstBlock, uint64_t lastBlock);
  Status finish();

  std::shared_ptr<BlobStore> source_;
  std::string blobName_;
  uint64_t size_ = 0;
  Sha256 sha256_{};
  std::filesystem::path partialPath_, finalPath_;
  UniqueFd fd_;
  std::atomic<bool> complete_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> fetched_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint8_t> present_;  // GUARDED_BY(mu_)
  bool finished_ = false;         // GUARDED_BY(mu_): background download ended
  Status result_;                 // GUARDED_BY(mu_)
  std::mutex finishMu_;           // one finish() at a time
  std::thread background_;
};

struct HostCodeCacheOptions {
  std::filesystem::path root;       // host cache: root/blobs (complete), root/partial
  std::filesystem::path mountRoot;  // FUSE mount points; default root/mnt
  std::filesystem::path treeRoot;   // extracted trees (full tier); default root/trees
  bool useFuse = true;              // false: always the full tier
  bool backgroundDownload = true;   // lazy tier: download the whole pack behind the mount
  int fuseThreads = 2;
  int64_t maxIndexBytes = 256 << 20;
};

class HostCodeCache {
 public:
  HostCodeCache(std::shared_ptr<BlobStore> source, HostCodeCacheOptions options);
  ~HostCodeCache();
  HostCodeCache(const HostCodeCache&) = delete;
  HostCodeCache& operator=(const HostCodeCache&) = delete;

  // The directory holding pack `sha`'s tree as `owner`'s (a FUSE mount or an extracted tree;
  // see the ownership rules above), ready to bind-mount. Idempotent and cheap once done;
  // concurrent calls for one pack share the work.
  Result<std::filesystem::path> acquire(const std::string& sha, CodeOwner owner);
  // The full tier whatever the options say, owned by this process (root) and not for sandboxes:
  // pack `sha` extracted to treeRoot/<sha>.
  Result<std::filesystem::path> extract(const std::string& sha);
  // Unmounts / deletes pack `sha` on this host, for every owner (no instance may be using it).
  Status release(const std::string& sha);
  // What this host holds, complete and verified: serve it to peers with a BlobServer.
  std::shared_ptr<LocalDirBlobStore> localStore() const { return local_; }
  // Waits until pack `sha`'s data file is complete on this host (tests, bench).
  Status waitLocal(const std::string& sha, std::chrono::milliseconds timeout);
  bool mounted(const std::string& sha);  // for any owner
  const HostCodeCacheOptions& options() const { return options_; }

 private:
  struct Pack {
    std::mutex mu;  // serialises loading this pack
    std::shared_ptr<const PackIndex> index;
    std::shared_ptr<CachedPackData> data;
    std::shared_ptr<PackReader> reader;
    std::map<CodeOwner, std::unique_ptr<PackMount>> mounts;  // GUARDED_BY(mu)
  };
  std::shared_ptr<Pack> slot(const std::string& sha);
  Status open(const std::string& sha, Pack& p);  // index, data source, reader
  Result<std::filesystem::path> load(const std::string& sha, Pack& p, CodeOwner owner);
  // owner empty: root's tree at treeRoot/<sha> (extract()).
  Result<std::filesystem::path> extractTree(const std::string& sha, Pack& p,
                                            std::optional<CodeOwner> owner);
  Result<std::string> fetchIndex(const std::string& sha);

  std::shared_ptr<BlobStore> source_;
  HostCodeCacheOptions options_;
  std::shared_ptr<LocalDirBlobStore> local_;
  std::mutex mu_;
  // Lock order: a Pack's mu, then mu_ (never the other way round).
  std::map<std::string, std::shared_ptr<Pack>> packs_;              // GUARDED_BY(mu_)
  std::map<std::string, std::weak_ptr<CachedPackData>> dataFiles_;  // GUARDED_BY(mu_)
  std::atomic<bool> fuseBroken_{false};
  std::unique_ptr<MountReaper> reaper_;  // GUARDED_BY(mu_); started with the first mount
};

bool isSha256Hex(std::string_view s);

// "owner-<uid>-<gid>": the directory under treeRoot and mountRoot holding an owner's trees.
std::string codeOwnerDirName(CodeOwner owner);

}  // namespace stratus
