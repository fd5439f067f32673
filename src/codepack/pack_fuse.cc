#define FUSE_USE_VERSION 34
#include "codepack/pack_fuse.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/fs.h"
#include "common/log.h"

namespace stratus {
namespace {

// A pack never changes, so the kernel may cache names and attributes for as long as it likes.
constexpr double kCacheSeconds = 86400.0;

PackMount& mountOf(fuse_req_t req) { return *static_cast<PackMount*>(fuse_req_userdata(req)); }
PackReader& readerOf(fuse_req_t req) { return mountOf(req).reader(); }

// FUSE inode numbers are entry index + 1 (FUSE_ROOT_ID is 1, the root is entry 0).
bool entryOf(const PackIndex& ix, fuse_ino_t ino, uint32_t& out) {
  if (ino < 1 || ino > ix.entryCount()) return false;
  out = static_cast<uint32_t>(ino - 1);
  return true;
}

// The owner's alone, read-only: the pack's own modes only decide whether a file is executable.
mode_t ownedMode(const PackEntry& e) {
  if (PackIndex::isDir(e)) return S_IFDIR | 0500;
  if (PackIndex::isSymlink(e)) return S_IFLNK | 0777;  // links carry no permissions of their own
  return S_IFREG | ((e.mode & 0111) != 0 ? 0500 : 0400);
}

void fillStat(fuse_req_t req, uint32_t i, struct stat& st) {
  std::memset(&st, 0, sizeof st);
  const PackIndex& ix = readerOf(req).index();
  const PackEntry& e = ix.entry(i);
  st.st_ino = i + 1;
  st.st_mode = ownedMode(e);
  st.st_uid = mountOf(req).owner().uid;
  st.st_gid = mountOf(req).owner().gid;
  st.st_nlink = PackIndex::isDir(e) ? 2 : 1;
  st.st_size = static_cast<off_t>(e.size);
  st.st_blksize = 4096;
  st.st_blocks = static_cast<blkcnt_t>((e.size + 511) / 512);
}

void opLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const PackIndex& ix = readerOf(req).index();
  uint32_t dir;
  if (!entryOf(ix, parent, dir) || !PackIndex::isDir(ix.entry(dir))) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.entry_timeout = kCacheSeconds;  // also caches the negative answer below (ino 0)
  e.attr_timeout = kCacheSeconds;
  uint32_t child = ix.lookup(dir, name);
  if (child != PackIndex::kNone) {
    e.ino = child + 1;
    e.generation = 1;
    fillStat(req, child, e.attr);
  }
  fuse_reply_entry(req, &e);
}

void opGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  const PackIndex& ix = readerOf(req).index();
  uint32_t i;
  if (!entryOf(ix, ino, i)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fillStat(req, i, st);
  fuse_reply_attr(req, &st, kCacheSeconds);
}

void opReadlink(fuse_req_t req, fuse_ino_t ino) {
  const PackIndex& ix = readerOf(req).index();
  uint32_t i;
  if (!entryOf(ix, ino, i) || !PackIndex::isSymlink(ix.entry(i))) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  fuse_reply_readlink(req, std::string(ix.symlinkTarget(i)).c_str());
}

void opOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const PackIndex& ix = readerOf(req).index();
  uint32_t i;
  if (!entryOf(ix, ino, i)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (PackIndex::isDir(ix.entry(i))) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->keep_cache = 1;  // pages stay valid across opens: the file never changes
  fuse_reply_open(req, fi);
}

void opRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  PackReader& r = readerOf(req);
  uint32_t i;
  if (!entryOf(r.index(), ino, i) || off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  std::string buf(size, '\0');
  auto n = r.read(i, static_cast<uint64_t>(off), size, buf.data());
  if (!n) {
    SLOG_ERROR("code pack read of {} at {}: {}", r.index().path(i), off, n.status().toString());
    fuse_reply_err(req, EIO);
    return;
  }
  fuse_reply_buf(req, buf.data(), *n);
}

void opOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const PackIndex& ix = readerOf(req).index();
  uint32_t i;
  if (!entryOf(ix, ino, i) || !PackIndex::isDir(ix.entry(i))) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void opReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  const PackIndex& ix = readerOf(req).index();
  uint32_t dir;
  if (!entryOf(ix, ino, dir) || !PackIndex::isDir(ix.entry(dir)) || off < 0) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  const auto& kids = ix.children(dir);
  std::string buf(size, '\0');
  size_t used = 0;
  // Offsets: 0 ".", 1 "..", k + 2 the k-th child; each entry carries the offset of the next.
  for (size_t k = static_cast<size_t>(off); k < kids.size() + 2; ++k) {
    struct stat st;
    std::memset(&st, 0, sizeof st);
    std::string name;
    if (k == 0) {
      name = ".";
      st.st_ino = ino;
      st.st_mode = S_IFDIR;
    } else if (k == 1) {
      name = "..";
      st.st_ino = ix.entry(dir).parent + 1;
      st.st_mode = S_IFDIR;
    } else {
      uint32_t c = kids[k - 2];
      name = std::string(ix.name(c));
      st.st_ino = c + 1;
      st.st_mode = ownedMode(ix.entry(c));
    }
    size_t need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st,
                                    static_cast<off_t>(k + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void opStatfs(fuse_req_t req, fuse_ino_t) {
  const PackIndex& ix = readerOf(req).index();
  struct statvfs s;
  std::memset(&s, 0, sizeof s);
  s.f_bsize = 4096;
  s.f_frsize = 4096;
  s.f_blocks = (ix.header().dataBytes + 4095) / 4096;
  s.f_files = ix.entryCount();
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops o;
  std::memset(&o, 0, sizeof o);
  o.lookup = opLookup;
  o.getattr = opGetattr;
  o.readlink = opReadlink;
  o.open = opOpen;
  o.read = opRead;
  o.opendir = opOpendir;
  o.readdir = opReaddir;
  o.statfs = opStatfs;
  return o;
}();

struct ArgsFree {
  fuse_args* a;
  ~ArgsFree() { fuse_opt_free_args(a); }
};

std::string unescapeMountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

bool fuseAvailable() {
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

Result<std::unique_ptr<PackMount>> PackMount::mount(std::shared_ptr<PackReader> reader,
                                                    const std::filesystem::path& mountPoint,
                                                    CodeOwner owner, int threads) {
  if (!fuseAvailable()) return unavailable("FUSE is not available (/dev/fuse cannot be opened)");
  RETURN_IF_ERROR(makeDirs(mountPoint, 0755));
  std::unique_ptr<PackMount> m(new PackMount(std::move(reader), mountPoint, owner));
  m->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m->stop_) return Status::fromErrno(errno, "eventfd for the code pack mount");

  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  ArgsFree freeArgs{&args};
  for (const char* a :
       {"stratus", "-o",
        "ro,allow_other,default_permissions,fsname=stratus-codepack,subtype=stratus"}) {
    if (fuse_opt_add_arg(&args, a) != 0) return internalError("fuse_opt_add_arg failed");
  }
  m->session_ = fuse_session_new(&args, &kOps, sizeof kOps, m.get());
  if (m->session_ == nullptr) return internalError("fuse_session_new failed");
  if (fuse_session_mount(m->session_, mountPoint.c_str()) != 0) {
    return unavailable("mount FUSE code pack at " + mountPoint.string() + " failed");
  }
  m->mounted_ = true;
  const int fd = fuse_session_fd(m->session_);
  // Non-blocking, so a thread that lost the race for a request goes back to poll (and sees the
  // stop eventfd) instead of sleeping in read().
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    return Status::fromErrno(errno, "set the FUSE fd non-blocking");
  }
  for (int t = 0; t < std::max(threads, 1); ++t) {
    m->threads_.emplace_back([raw = m.get()] { raw->serve(); });
  }
  return m;
}

void PackMount::serve() {
  fuse_buf buf;
  std::memset(&buf, 0, sizeof buf);
  pollfd fds[2] = {{fuse_session_fd(session_), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  while (!fuse_session_exited(session_)) {
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    int n = fuse_session_receive_buf(session_, &buf);
    if (n == -EAGAIN || n == -EINTR) continue;
    if (n <= 0) break;  // 0: unmounted or aborted
    fuse_session_process_buf(session_, &buf);
  }
  std::free(buf.mem);
}

PackMount::~PackMount() {
  if (stop_) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
  }
  for (auto& t : threads_) t.join();
  if (session_ != nullptr) {
    // Closes the session fd first (aborting the connection, so nothing can hang on it), then
    // detaches the mount.
    if (mounted_) fuse_session_unmount(session_);
    fuse_session_destroy(session_);
    if (mounted_) ::rmdir(mountPoint_.c_str());  // fails harmlessly if still busy
  }
}

namespace {

// Runs in the forked child: only system calls, no allocation (the parent is multi-threaded).
[[noreturn]] void reaperMain(int readFd, const char* prefix, size_t prefixLen, char* buf,
                             size_t bufLen) {
  ::setsid();  // not in the parent's process group: a ^C to the server does not reach us
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  if (readFd != 0) {
    ::dup2(readFd, 0);
  }
  ::syscall(SYS_close_range, 1U, ~0U, 0U);
  char c;
  while (::read(0, &c, 1) != 0) {
    if (errno != EINTR && errno != EAGAIN) break;
  }
  int fd = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) ::_exit(1);
  size_t len = 0;
  for (ssize_t n; len < bufLen - 1 && (n = ::read(fd, buf + len, bufLen - 1 - len)) > 0;) {
    len += static_cast<size_t>(n);
  }
  ::close(fd);
  buf[len] = '\0';
  // Field 5 of each line is the mount point, octal-escaped; unescape in place and compare.
  // Deeper mounts appear after their parents, so walking lines backwards unmounts children
  // first.
  for (size_t end = len; end > 0;) {
    size_t start = end - 1;
    while (start > 0 && buf[start - 1] != '\n') --start;
    char* line = buf + start;
    if (buf[end - 1] == '\n') buf[end - 1] = '\0';
    char* f = line;
    for (int field = 0; field < 4 && f != nullptr; ++field) {
      f = std::strchr(f, ' ');
      if (f != nullptr) ++f;
    }
    if (f != nullptr) {
      char* sp = std::strchr(f, ' ');
      if (sp != nullptr) *sp = '\0';
      char* w = f;
      for (char* r = f; *r != '\0'; ++r) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
          *w++ = static_cast<char>((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
          r += 3;
        } else {
          *w++ = *r;
        }
      }
      *w = '\0';
      if (std::strncmp(f, prefix, prefixLen) == 0 && ::umount2(f, MNT_DETACH) == 0) ::rmdir(f);
    }
    end = start;
  }
  // The root itself, if nothing else lives there ("<root>/" -> "<root>").
  if (prefixLen > 1 && prefixLen < bufLen) {
    std::memcpy(buf, prefix, prefixLen - 1);
    buf[prefixLen - 1] = '\0';
    ::rmdir(buf);
  }
  ::_exit(0);
}

}  // namespace

Result<std::unique_ptr<MountReaper>> MountReaper::start(const std::filesystem::path& root) {
  const std::string prefix = root.lexically_normal().string() + "/";
  std::vector<char> buf(4 << 20);  // allocated before fork: the child must not allocate
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::fromErrno(errno, "pipe for the mount reaper");
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::fromErrno(err, "fork the mount reaper");
  }
  if (pid == 0) reaperMain(fds[0], prefix.c_str(), prefix.size(), buf.data(), buf.size());
  ::close(fds[0]);
  return std::unique_ptr<MountReaper>(new MountReaper(pid, fds[1]));
}

MountReaper::~MountReaper() {
  writeFd_.reset();  // EOF: the child sweeps (nothing left after a clean shutdown) and exits
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

int unmountUnder(const std::filesystem::path& root) {
  std::ifstream in("/proc/self/mountinfo");
  const std::string prefix = root.lexically_normal().string() + "/";
  std::vector<std::string> found;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, mroot, point;
    if (!(fields >> id >> parent >> dev >> mroot >> point)) continue;
    point = unescapeMountinfo(point);
    if (point.compare(0, prefix.size(), prefix) == 0) found.push_back(point);
  }
  // Deepest first, so nested mounts come off before their parents.
  std::sort(found.begin(), found.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  int n = 0;
  for (const std::string& p : found) {
    if (::umount2(p.c_str(), MNT_DETACH) == 0) {
      ++n;
    } else {
      SLOG_WARN("unmount stale code pack mount {}: {}", p, std::strerror(errno));
    }
  }
  return n;
}

}  // namespace stratus
