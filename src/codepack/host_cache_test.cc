// Worker side of code packs against the real kernel and real sockets: the FUSE view, the blob
// server's range protocol, lazy loading with a background download, the full-extraction tier,
// peer-to-peer fetches between several host caches on this machine, and mount cleanup.
#include "codepack/host_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "codepack/blob_http.h"
#include "codepack/pack_fuse.h"
#include "codepack/pack_test_util.h"
#include "codepack/pack_writer.h"
#include "codepack/zip_import.h"
#include "codepack/zip_writer.h"
#include "common/fs.h"
#include "common/ids.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// nobody: what the plain profile (no user namespaces) runs sandboxes as.
constexpr CodeOwner kOwner{65534, 65534};
// Two tenants' sandbox uids as TenantIdMap hands them out (range base + 65534).
constexpr CodeOwner kTenantA{(1u << 24) + 65534, (1u << 24) + 65534};
constexpr CodeOwner kTenantB{(1u << 24) + 65536 + 65534, (1u << 24) + 65536 + 65534};

std::string ownerDir(CodeOwner o) { return codeOwnerDirName(o); }

// Runs fn in a child process as `who` (all of real/effective/saved uid and gid, no
// supplementary groups) -- a stranger to root's files, like a sandbox's host uid. fn returns 0
// or an errno; so does this (255: could not become `who`).
int asUser(CodeOwner who, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(who.gid, who.gid, who.gid) != 0 ||
        ::setresuid(who.uid, who.uid, who.uid) != 0) {
      _exit(255);
    }
    _exit(fn());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 254;
  return WEXITSTATUS(status);
}

// 0 if the file opens and reads, else the errno.
int readAt(int dirFd, const char* name) {
  int fd = ::openat(dirFd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char c;
  int r = ::read(fd, &c, 1) < 0 ? errno : 0;
  ::close(fd);
  return r;
}
// 0 if the directory lists, else the errno.
int listAt(int dirFd) {
  int fd = ::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) return errno;
  errno = 0;
  int r = ::readdir(d) == nullptr ? (errno != 0 ? errno : ENOENT) : 0;
  ::closedir(d);
  return r;
}

bool mountedAt(const fs::path& p) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + p.string() + " ") != std::string::npos) return true;
  }
  return false;
}

bool mountsUnder(const fs::path& p) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + p.string() + "/") != std::string::npos) return true;
  }
  return false;
}

HostCodeCacheOptions at(const fs::path& root, bool fuse = true, bool background = true) {
  HostCodeCacheOptions o;
  o.root = root;
  o.useFuse = fuse;
  o.backgroundDownload = background;
  return o;
}

#define REQUIRE_FUSE()                                                          \
  do {                                                                          \
    if (::geteuid() != 0 || !fuseAvailable()) {                                 \
      GTEST_SKIP() << "needs root and /dev/fuse (FUSE mounts are the subject)"; \
    }                                                                           \
  } while (0)

// An origin blob store holding one pack built from the sample tree.
struct Origin {
  explicit Origin(const fs::path& dir, size_t bigBytes = (5 << 20) + 17, uint64_t seed = 11) {
    const fs::path src = dir / "src";
    big = randomBytes(bigBytes, seed);
    buildSampleTree(src, big);
    store = std::make_shared<LocalDirBlobStore>(dir / "origin");
    auto w = writePack(src, dir / "data.tmp");
    EXPECT_TRUE(w.isOk()) << w.status().toString();
    sha = sha256Hex("pack-" + std::to_string(seed));  // stands for the zip's sha256
    dataName = packDataBlob(w->dataSha256);
    dataBytes = w->dataBytes;
    EXPECT_TRUE(store->putFile(dataName, dir / "data.tmp").isOk());
    EXPECT_TRUE(store->putBytes(packIndexBlob(sha), w->index, dir).isOk());
    auto s = BlobServer::start(store);
    EXPECT_TRUE(s.isOk()) << s.status().toString();
    server = std::move(*s);
  }
  std::string big, sha, dataName;
  int64_t dataBytes = 0;
  std::shared_ptr<LocalDirBlobStore> store;
  std::unique_ptr<BlobServer> server;
};

TEST(BlobServer, ServesRangesHeadAndErrors) {
  TempDir t;
  auto store = std::make_shared<LocalDirBlobStore>(t.path());
  const std::string body = randomBytes(3 << 20, 5);
  ASSERT_TRUE(store->putBytes("data/x", body, t.path()).isOk());
  auto server = BlobServer::start(store);
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  HttpBlobStore client((*server)->url());
  EXPECT_EQ(*client.size("data/x"), static_cast<int64_t>(body.size()));
  EXPECT_EQ(client.size("data/y").status().code(), Code::kNotFound);
  EXPECT_EQ(*client.readRange("data/x", 0, 10), body.substr(0, 10));
  EXPECT_EQ(*client.readRange("data/x", (1 << 20) - 3, 2 << 20),
            body.substr((1 << 20) - 3, 2 << 20));
  EXPECT_EQ(*client.readAll("data/x", 10 << 20), body);
  EXPECT_EQ(client.readRange("data/x", body.size() - 1, 2).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(client.readRange("data/x", body.size(), 1).status().code(), Code::kInvalidArgument);
  // Names that could leave the store are not even sent.
  EXPECT_FALSE(client.readRange("../x", 0, 1).isOk());
  EXPECT_FALSE(client.size("data/../../etc/passwd").isOk());
  EXPECT_FALSE(validBlobName(".hidden"));
  EXPECT_TRUE(validBlobName("packs/abc.index"));
  HttpBlobStore down("http://127.0.0.1:1");
  EXPECT_EQ(down.size("data/x").status().code(), Code::kUnavailable);
}

TEST(PackMount, ServesTheTreeReadOnlyAndUnmountsOnDestruction) {
  REQUIRE_FUSE();
  TempDir t;
  Origin o(t.path());
  auto ix = PackIndex::parse(*o.store->readAll(packIndexBlob(o.sha), 1 << 20));
  ASSERT_TRUE(ix.isOk());
  auto data = CachedPackData::openLocal(*o.store->localPath(o.dataName), o.dataBytes);
  ASSERT_TRUE(data.isOk());
  auto reader =
      std::make_shared<PackReader>(std::make_shared<const PackIndex>(std::move(*ix)), *data);
  const fs::path mp = t.path() / "mnt";
  {
    auto m = PackMount::mount(reader, mp, kOwner);
    ASSERT_TRUE(m.isOk()) << m.status().toString();
    EXPECT_TRUE(mountedAt(mp));
    EXPECT_EQ(*readFile(mp / "data/small.txt"), "small\n");
    EXPECT_EQ(*readFile(mp / "data/big.bin"), o.big);
    EXPECT_EQ(fs::read_symlink(mp / "lib/link"), "../index.py");
    EXPECT_EQ(*readFile(mp / "lib/link"), *readFile(mp / "index.py"));
    struct stat st;
    ASSERT_EQ(::stat((mp / "bootstrap").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode, S_IFREG | 0500u);  // the owner's alone; executable stays executable
    EXPECT_EQ(st.st_uid, kOwner.uid);
    EXPECT_EQ(st.st_gid, kOwner.gid);
    EXPECT_EQ(st.st_size, 18);
    ASSERT_EQ(::stat((mp / "index.py").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode, S_IFREG | 0400u);
    ASSERT_EQ(::stat(mp.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode, S_IFDIR | 0500u);
    ASSERT_EQ(::stat((mp / "lib/emptydir").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(mp)) names.insert(e.path().filename());
    EXPECT_EQ(names, (std::set<std::string>{"bootstrap", "data", "empty", "index.py", "lib"}));
    EXPECT_FALSE(fs::exists(mp / "missing"));
    EXPECT_LT(::open((mp / "index.py").c_str(), O_WRONLY), 0);
    EXPECT_EQ(errno, EROFS);
    EXPECT_LT(::open((mp / "new").c_str(), O_WRONLY | O_CREAT, 0644), 0);
    EXPECT_LT(::mkdir((mp / "d").c_str(), 0755), 0);
    // The owner (as a sandbox is) can read it: allow_other + the modes; nobody else can.
    EXPECT_EQ(
        asUser({65533, 65533}, [&] { return readAt(AT_FDCWD, (mp / "data/small.txt").c_str()); }),
        EACCES);
    ASSERT_EQ(::chmod(t.path().c_str(), 0755), 0);  // mkdtemp made it 0700
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
      int fd = ::open((mp / "data/small.txt").c_str(), O_RDONLY);
      _exit(fd >= 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_FALSE(mountedAt(mp)) << "mount survived its owner";
}

TEST(HostCodeCache, LazyMountReadsByRangeThenDownloadsEverything) {
  REQUIRE_FUSE();
  TempDir t;
  Origin o(t.path(), 20 << 20);
  const fs::path hostRoot = t.path() / "host";
  {
    HostCodeCache host(std::make_shared<HttpBlobStore>(o.server->url()),
                       at(hostRoot, true, /*background=*/false));
    auto dir = host.acquire(o.sha, kOwner);
    ASSERT_TRUE(dir.isOk()) << dir.status().toString();
    EXPECT_EQ(*dir, hostRoot / "mnt" / ownerDir(kOwner) / o.sha);
    EXPECT_TRUE(host.mounted(o.sha));
    EXPECT_EQ(*readFile(*dir / "data/small.txt"), "small\n");
    // Only the index and the block holding small.txt came over the wire (no background).
    EXPECT_LT(o.server->bytesServed(), 2 << 20) << "read more than it needed";
    EXPECT_EQ(*host.acquire(o.sha, kOwner), *dir);  // idempotent: one mount per pack per host

    ASSERT_TRUE(host.waitLocal(o.sha, 60s).isOk());
    EXPECT_TRUE(fs::exists(hostRoot / "blobs" / o.dataName));
    EXPECT_FALSE(fs::exists(hostRoot / "partial" / o.dataName));
    const int64_t served = o.server->bytesServed();
    EXPECT_EQ(*readFile(*dir / "data/big-copy.bin"), o.big);
    EXPECT_EQ(o.server->bytesServed(), served) << "a local pack still read from the origin";
  }
  EXPECT_FALSE(mountsUnder(hostRoot)) << "HostCodeCache left a mount behind";

  // A new host cache over the same directory finds the pack local: nothing is fetched.
  const int64_t before = o.server->bytesServed();
  HostCodeCache again(std::make_shared<HttpBlobStore>(o.server->url()), at(hostRoot));
  auto dir = again.acquire(o.sha, kOwner);
  ASSERT_TRUE(dir.isOk()) << dir.status().toString();
  EXPECT_EQ(*readFile(*dir / "data/big.bin"), o.big);
  EXPECT_EQ(o.server->bytesServed(), before);
}

TEST(HostCodeCache, BackgroundDownloadCompletesBehindTheMount) {
  REQUIRE_FUSE();
  TempDir t;
  Origin o(t.path(), 12 << 20);
  HostCodeCache host(std::make_shared<HttpBlobStore>(o.server->url()), at(t.path() / "host"));
  auto dir = host.acquire(o.sha, kOwner);
  ASSERT_TRUE(dir.isOk()) << dir.status().toString();
  EXPECT_EQ(*readFile(*dir / "index.py"),
            "def handler(e, c):\n    return open('/code/data/small.txt').read()\n");
  ASSERT_TRUE(host.waitLocal(o.sha, 60s).isOk());
  EXPECT_TRUE(fs::exists(t.path() / "host/blobs" / o.dataName));
  EXPECT_EQ(*readFile(*dir / "data/big.bin"), o.big);
}

TEST(HostCodeCache, FullTierExtractsWithoutFuse) {
  TempDir t;
  Origin o(t.path());
  HostCodeCacheOptions opts = at(t.path() / "host");
  opts.useFuse = false;
  HostCodeCache host(std::make_shared<HttpBlobStore>(o.server->url()), opts);
  auto dir = host.acquire(o.sha, kOwner);
  ASSERT_TRUE(dir.isOk()) << dir.status().toString();
  EXPECT_EQ(*dir, t.path() / "host/trees" / ownerDir(kOwner) / o.sha);
  EXPECT_FALSE(host.mounted(o.sha));
  EXPECT_EQ(*readFile(*dir / "data/big.bin"), o.big);
  EXPECT_EQ(fs::read_symlink(*dir / "lib/link"), "../index.py");
  EXPECT_TRUE(fs::exists(t.path() / "host/blobs" / o.dataName));
  ASSERT_TRUE(host.release(o.sha).isOk());
  EXPECT_FALSE(fs::exists(*dir));
}

TEST(HostCodeCache, UnknownAndCorruptPacksAreErrors) {
  TempDir t;
  Origin o(t.path());
  HostCodeCacheOptions opts = at(t.path() / "host");
  opts.useFuse = false;
  HostCodeCache host(std::make_shared<HttpBlobStore>(o.server->url()), opts);
  EXPECT_EQ(host.acquire(sha256Hex("nope"), kOwner).status().code(), Code::kNotFound);
  EXPECT_EQ(host.acquire("../etc", kOwner).status().code(), Code::kInvalidArgument);
  // A data file damaged at the origin: extraction fails on the checksum, nothing is published.
  const fs::path data = *o.store->localPath(o.dataName);
  std::string bytes = *readFile(data);
  bytes[bytes.size() / 2] ^= 0x55;
  ASSERT_EQ(::unlink(data.c_str()), 0);
  ASSERT_TRUE(writeFileAtomic(data, bytes).isOk());
  auto r = host.acquire(o.sha, kOwner);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("SHA-256"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(t.path() / "host/trees" / ownerDir(kOwner) / o.sha));
  EXPECT_FALSE(fs::exists(t.path() / "host/blobs" / o.dataName));
}

// Several workers on one machine: A takes the pack from the origin, then B and C take it from A
// (C's first peer is down); the origin serves the data file once.
TEST(HostCodeCache, PeersServeWhatTheyHoldBeforeTheOrigin) {
  TempDir t;
  Origin o(t.path(), 8 << 20);
  auto originClient = std::make_shared<HttpBlobStore>(o.server->url());
  auto opts = [&](const std::string& name) {
    HostCodeCacheOptions h = at(t.path() / name);
    h.useFuse = fuseAvailable() && ::geteuid() == 0;
    return h;
  };
  auto sourceA = std::make_shared<PeerBlobStore>(std::vector<std::string>{}, originClient);
  HostCodeCache a(sourceA, opts("a"));
  auto serverA = BlobServer::start(a.localStore());
  ASSERT_TRUE(serverA.isOk());
  auto dirA = a.acquire(o.sha, kOwner);
  ASSERT_TRUE(dirA.isOk()) << dirA.status().toString();
  ASSERT_TRUE(a.waitLocal(o.sha, 60s).isOk());
  const int64_t originAfterA = o.server->bytesServed();
  EXPECT_GE(originAfterA, o.dataBytes);

  auto sourceB =
      std::make_shared<PeerBlobStore>(std::vector<std::string>{(*serverA)->url()}, originClient);
  HostCodeCache b(sourceB, opts("b"));
  auto dirB = b.acquire(o.sha, kOwner);
  ASSERT_TRUE(dirB.isOk()) << dirB.status().toString();
  EXPECT_EQ(*readFile(*dirB / "data/small.txt"), "small\n");
  ASSERT_TRUE(b.waitLocal(o.sha, 60s).isOk());
  EXPECT_EQ(*readFile(*dirB / "data/big.bin"), o.big);
  EXPECT_EQ(o.server->bytesServed(), originAfterA) << "B went to the origin";
  EXPECT_GE(sourceB->bytesFromPeers(), o.dataBytes);
  EXPECT_EQ(sourceB->bytesFromOrigin(), 0);

  auto sourceC = std::make_shared<PeerBlobStore>(
      std::vector<std::string>{"http://127.0.0.1:1", (*serverA)->url()}, originClient);
  HostCodeCache c(sourceC, opts("c"));
  auto dirC = c.acquire(o.sha, kOwner);
  ASSERT_TRUE(dirC.isOk()) << dirC.status().toString();
  ASSERT_TRUE(c.waitLocal(o.sha, 60s).isOk());
  EXPECT_EQ(*readFile(*dirC / "data/big-copy.bin"), o.big);
  EXPECT_EQ(o.server->bytesServed(), originAfterA) << "C went to the origin";

  // A pack no peer holds comes from the origin.
  Origin other(t.path() / "other", 1 << 20, 99);
  auto sourceD =
      std::make_shared<PeerBlobStore>(std::vector<std::string>{(*serverA)->url()},
                                      std::make_shared<HttpBlobStore>(other.server->url()));
  HostCodeCache d(sourceD, opts("d"));
  auto dirD = d.acquire(other.sha, kOwner);
  ASSERT_TRUE(dirD.isOk()) << dirD.status().toString();
  EXPECT_EQ(*readFile(*dirD / "data/big.bin"), other.big);
  EXPECT_EQ(sourceD->bytesFromPeers(), 0);
}

TEST(HostCodeCache, UnmountsWhatAKilledPredecessorLeft) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  TempDir t;
  const fs::path stale = t.path() / "host/mnt" / sha256Hex("x");
  ASSERT_TRUE(makeDirs(stale).isOk());
  ASSERT_EQ(::mount("tmpfs", stale.c_str(), "tmpfs", 0, "size=1m"), 0) << strerror(errno);
  ASSERT_TRUE(mountedAt(stale));
  HostCodeCache host(std::make_shared<LocalDirBlobStore>(t.path() / "origin"),
                     at(t.path() / "host"));
  EXPECT_FALSE(mountedAt(stale));
}

// kill -9 of the process serving a mount: the FUSE session dies with it, and the reaper child
// takes the dead mount away.
TEST(HostCodeCache, MountsDoNotOutliveAKilledProcess) {
  REQUIRE_FUSE();
  TempDir t;
  Origin o(t.path());
  const fs::path hostRoot = t.path() / "host";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    HostCodeCache host(o.store, at(hostRoot));
    auto dir = host.acquire(o.sha, kOwner);
    char c = dir.isOk() && readFile(*dir / "data/small.txt").isOk() ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(c, 'y');
  EXPECT_TRUE(mountsUnder(hostRoot));
  ::kill(pid, SIGKILL);
  int status;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (mountsUnder(hostRoot) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(mountsUnder(hostRoot)) << "a dead mount outlived its process";
}

TEST(CodeCache, InstallStoresAPackAndServesItThroughTheMount) {
  TempDir t;
  ZipWriter w;
  ASSERT_TRUE(w.addFile("index.py", "def handler(e, c):\n    return 1\n").isOk());
  ASSERT_TRUE(w.addFile("lib/big.bin", randomBytes(3 << 20, 2)).isOk());
  ASSERT_TRUE(w.addSymlink("link", "lib/big.bin").isOk());
  auto zip = w.finish();
  ASSERT_TRUE(zip.isOk());
  const std::string sha = sha256Hex(*zip);
  const fs::path root = t.path() / "code";
  {
    CodeCache cache(root);
    auto info = cache.install(*zip);
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    EXPECT_EQ(info->files, 2);
    // Deploy stores a pack, not a tree.
    EXPECT_TRUE(fs::exists(root / "blobs" / packIndexBlob(sha)));
    EXPECT_FALSE(fs::exists(root / sha));
    auto dir = cache.acquire(sha, kOwner);
    ASSERT_TRUE(dir.isOk()) << dir.status().toString();
    EXPECT_EQ(*readFile(*dir / "index.py"), "def handler(e, c):\n    return 1\n");
    EXPECT_EQ(*readFile(*dir / "link"), randomBytes(3 << 20, 2));
    if (fuseAvailable() && ::geteuid() == 0) {
      EXPECT_EQ(*dir, defaultMountRoot(root) / ownerDir(kOwner) / sha);
      EXPECT_TRUE(mountedAt(*dir));
    }
  }
  EXPECT_FALSE(mountsUnder(defaultMountRoot(root))) << "CodeCache left a mount behind";
  // Without FUSE the same pack is extracted, per owner, under the (private) code root.
  CodeCache plain(root, CodeCacheOptions{false, {}, nullptr, {}});
  auto dir = plain.acquire(sha, kOwner);
  ASSERT_TRUE(dir.isOk()) << dir.status().toString();
  EXPECT_EQ(*dir, root / ownerDir(kOwner) / sha);
  EXPECT_EQ(*readFile(*dir / "index.py"), "def handler(e, c):\n    return 1\n");
}

// Issue 3: a tenant's code is its own. Two tenants acquire the same pack; each gets a tree owned
// by its sandbox uid (dirs 0500, files 0400, executables 0500) that the other tenant's uid and
// nobody can neither list nor read -- even holding a handle to the directory, as a bind mount
// would give -- while the owner can. Everything around the trees is root's (0700, blobs 0600),
// so no such uid even gets to the path. Both tiers.
class CodeOwnership : public ::testing::TestWithParam<bool> {};

TEST_P(CodeOwnership, TreesBelongToTheirTenantAndNobodyElse) {
  const bool fuse = GetParam();
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to hand trees to other uids";
  if (fuse && !fuseAvailable()) GTEST_SKIP() << "no /dev/fuse: the FUSE tier is the subject";
  TempDir t;
  ASSERT_EQ(::chmod(t.path().c_str(), 0755), 0);  // only the cache's own dirs may stop them
  Origin o(t.path());
  const fs::path root = t.path() / "host";
  HostCodeCache host(std::make_shared<HttpBlobStore>(o.server->url()), at(root, fuse));
  auto dirA = host.acquire(o.sha, kTenantA);
  ASSERT_TRUE(dirA.isOk()) << dirA.status().toString();
  auto dirB = host.acquire(o.sha, kTenantB);
  ASSERT_TRUE(dirB.isOk()) << dirB.status().toString();
  EXPECT_NE(*dirA, *dirB) << "two tenants share one view of their code";
  EXPECT_EQ(host.mounted(o.sha), fuse);
  ASSERT_TRUE(host.waitLocal(o.sha, 60s).isOk());
  EXPECT_EQ(*readFile(*dirB / "data/big.bin"), o.big);  // root reads both

  // What each tree looks like on the host.
  for (auto [dir, owner] : {std::pair{*dirA, kTenantA}, std::pair{*dirB, kTenantB}}) {
    struct stat st;
    ASSERT_EQ(::lstat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, owner.uid);
    EXPECT_EQ(st.st_gid, owner.gid);
    EXPECT_EQ(st.st_mode, S_IFDIR | 0500u) << dir;
    ASSERT_EQ(::lstat((dir / "data").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode, S_IFDIR | 0500u);
    EXPECT_EQ(st.st_uid, owner.uid);
    ASSERT_EQ(::lstat((dir / "index.py").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode, S_IFREG | 0400u);
    EXPECT_EQ(st.st_uid, owner.uid);
    EXPECT_EQ(st.st_gid, owner.gid);
    ASSERT_EQ(::lstat((dir / "bootstrap").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode, S_IFREG | 0500u);
    ASSERT_EQ(::lstat((dir / "lib/link").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(st.st_uid, owner.uid);
  }
  // Everything else under the cache is root's alone.
  for (const fs::path& d : {root, root / "blobs", root / "partial", root / "trees", root / "mnt",
                            root / (fuse ? "mnt" : "trees") / ownerDir(kTenantA)}) {
    struct stat st;
    ASSERT_EQ(::lstat(d.c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
    EXPECT_EQ(st.st_uid, 0u) << d;
  }
  struct stat blob;
  ASSERT_EQ(::lstat((root / "blobs" / o.dataName).c_str(), &blob), 0);
  EXPECT_EQ(blob.st_mode & 07777, 0600u);

  // Handles to the trees, as a bind mount gives a sandbox (no walk through the cache's dirs).
  UniqueFd a(::open(dirA->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  UniqueFd b(::open(dirB->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(a && b);
  const int fa = a.get(), fb = b.get();
  // The owner reads and lists its own code.
  EXPECT_EQ(asUser(kTenantA, [&] { return readAt(fa, "index.py"); }), 0);
  EXPECT_EQ(asUser(kTenantA, [&] { return readAt(fa, "data/small.txt"); }), 0);
  EXPECT_EQ(asUser(kTenantA, [&] { return listAt(fa); }), 0);
  EXPECT_EQ(asUser(kTenantB, [&] { return readAt(fb, "index.py"); }), 0);
  // The other tenant and nobody cannot read, list or even look inside.
  for (CodeOwner stranger : {kTenantB, kOwner}) {
    EXPECT_EQ(asUser(stranger, [&] { return readAt(fa, "index.py"); }), EACCES);
    EXPECT_EQ(asUser(stranger, [&] { return readAt(fa, "data/small.txt"); }), EACCES);
    EXPECT_EQ(asUser(stranger, [&] { return listAt(fa); }), EACCES);
  }
  EXPECT_EQ(asUser(kTenantA, [&] { return readAt(fb, "index.py"); }), EACCES);
  EXPECT_EQ(asUser(kTenantA, [&] { return listAt(fb); }), EACCES);
  // By host path, not even the owner gets through the cache's root-only directories.
  for (CodeOwner who : {kTenantA, kTenantB}) {
    EXPECT_EQ(asUser(who, [&] { return readAt(AT_FDCWD, (*dirA / "index.py").c_str()); }), EACCES);
    EXPECT_EQ(asUser(who, [&] { return readAt(AT_FDCWD, (root / "blobs" / o.dataName).c_str()); }),
              EACCES);
  }
  // release() takes every owner's copy away.
  a.reset();
  b.reset();
  ASSERT_TRUE(host.release(o.sha).isOk());
  EXPECT_FALSE(host.mounted(o.sha));
  if (!fuse) {
    EXPECT_FALSE(fs::exists(*dirA));
    EXPECT_FALSE(fs::exists(*dirB));
  }
}

INSTANTIATE_TEST_SUITE_P(Tiers, CodeOwnership, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "Fuse" : "Extracted";
                         });

// An earlier version left the cache world-traversable: the next start takes that back.
TEST(HostCodeCache, MakesAnOpenCacheRootPrivateAgain) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  TempDir t;
  const fs::path root = t.path() / "host";
  ASSERT_TRUE(makeDirs(root / "blobs/data", 0755).isOk());
  ASSERT_TRUE(makeDirs(root / "trees" / ownerDir(kTenantA), 0755).isOk());
  ASSERT_EQ(::chmod(root.c_str(), 0755), 0);
  ASSERT_EQ(::chown((root / "blobs").c_str(), 65534, 65534), 0);
  HostCodeCache host(std::make_shared<LocalDirBlobStore>(t.path() / "origin"), at(root, false));
  for (const fs::path& d : {root, root / "blobs", root / "trees" / ownerDir(kTenantA)}) {
    struct stat st;
    ASSERT_EQ(::lstat(d.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
    EXPECT_EQ(st.st_uid, 0u) << d;
  }
}

}  // namespace
}  // namespace stratus
