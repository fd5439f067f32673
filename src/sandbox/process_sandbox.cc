#include "sandbox/process_sandbox.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"
#include "sandbox/code_mount.h"
#include "sandbox/init_image.h"
#include "sandbox/sandbox_init.h"
#include "sandbox/seccomp_filter.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace stratus {

namespace fs = std::filesystem;
using sandbox_internal::ChildError;
using sandbox_internal::ChildOp;
using sandbox_internal::ChildPlan;
using sandbox_internal::OpKind;

namespace {

// How long create() waits for the child to set up its root and exec. Mounts take microseconds;
// this only bounds a child stuck in the kernel (a hung bind-mount source) so create never hangs.
constexpr int kSetupTimeoutMs = 10'000;
constexpr size_t kChildStackSize = 64 * 1024;

constexpr unsigned long kRoRemount = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;

// Appends ops to a plan and keeps the strings they point to alive (std::deque never moves its
// elements, so the c_str() pointers stay valid while more strings are added).
class PlanBuilder {
 public:
  PlanBuilder(std::deque<std::string>& strings, std::vector<ChildOp>& ops)
      : strings_(strings), ops_(ops) {}

  const char* keep(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back().c_str();
  }
  void add(ChildOp op) { ops_.push_back(op); }

  // Creates the mount point `rel` (relative to the new root, the child's cwd) as a directory.
  void mkdir(const std::string& rel, mode_t mode = 0755) {
    add({.kind = OpKind::kMkdir,
         .ignoreExist = true,
         .a = keep(rel),
         .flags = mode,
         .what = keep("create directory /" + rel)});
  }
  void touch(const std::string& rel) {
    add({.kind = OpKind::kTouch,
         .ignoreExist = true,
         .a = keep(rel),
         .what = keep("create mount point /" + rel)});
  }
  void symlink(const std::string& target, const std::string& rel) {
    add({.kind = OpKind::kSymlink,
         .a = keep(target),
         .b = keep(rel),
         .what = keep("symlink /" + rel + " -> " + target)});
  }
  // Bind-mounts host path `src` at `rel`, creating the mount point; read-only needs a second
  // (remount) call -- the kernel ignores MS_RDONLY on the initial MS_BIND.
  void bind(const std::string& src, const std::string& rel, bool isDir, bool readOnly) {
    if (isDir) {
      mkdir(rel);
    } else {
      touch(rel);
    }
    const char* target = keep(rel);
    add({.kind = OpKind::kMount,
         .a = keep(src),
         .b = target,
         .flags = MS_BIND | MS_REC,
         .what = keep("bind-mount " + src + " at /" + rel)});
    if (readOnly) {
      add({.kind = OpKind::kMount,
           .b = target,
           .flags = kRoRemount,
           .what = keep("remount /" + rel + " read-only")});
    }
  }
  // Bind-mounts `src` over the existing path `rel` (a /proc mask), then remounts it read-only.
  void bindOver(const std::string& src, const std::string& rel, unsigned long extraFlags) {
    const char* target = keep(rel);
    add({.kind = OpKind::kMount,
         .a = keep(src),
         .b = target,
         .flags = MS_BIND | MS_REC,
         .what = keep("mask /" + rel + " with " + src)});
    add({.kind = OpKind::kMount,
         .b = target,
         .flags = kRoRemount | extraFlags,
         .what = keep("remount /" + rel + " read-only")});
  }
  void mount(const char* fstype, const std::string& rel, unsigned long flags,
             const std::string& data) {
    add({.kind = OpKind::kMount,
         .a = fstype,
         .b = keep(rel),
         .fstype = fstype,
         .flags = flags,
         .data = keep(data),
         .what = keep(std::string("mount ") + fstype + " at /" + rel)});
  }

 private:
  std::deque<std::string>& strings_;
  std::vector<ChildOp>& ops_;
};

enum class HostKind { kAbsent, kDir, kFile, kCharDev, kSymlink };

HostKind hostKind(const std::string& path, bool followSymlinks) {
  struct stat st;
  int rc = followSymlinks ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st);
  if (rc != 0) return HostKind::kAbsent;
  if (S_ISLNK(st.st_mode)) return HostKind::kSymlink;
  if (S_ISDIR(st.st_mode)) return HostKind::kDir;
  if (S_ISCHR(st.st_mode)) return HostKind::kCharDev;
  return HostKind::kFile;
}

bool validId(const std::string& id) {
  if (id.empty() || id.size() > 48) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

// "/a/b" -> "a/b"; rejects relative paths, "..", "." and empty components.
std::optional<std::string> relativeSandboxPath(const std::string& p) {
  if (p.size() < 2 || p[0] != '/') return std::nullopt;
  std::string rel = p.substr(1);
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    std::string_view comp(rel.data() + start, end - start);
    if (comp.empty() || comp == "." || comp == "..") return std::nullopt;
    start = end + 1;
  }
  return rel;
}

// Waits until fd yields `want` (true) or EOF (false), bounded by the deadline.
Result<bool> waitForByte(int fd, char want, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) return Status(Code::kDeadlineExceeded, "sandbox init did not answer in time");
    pollfd pfd{fd, POLLIN, 0};
    int rc = ::poll(&pfd, 1, left);
    if (rc < 0 && errno != EINTR) return Status::fromErrno(errno, "poll the sandbox init");
    if (rc <= 0) continue;
    char c = 0;
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ECONNRESET) return false;
    if (n < 0) return Status::fromErrno(errno, "read from the sandbox init");
    if (n == 0) return false;
    if (c != want) return internalError(std::string("unexpected byte from the sandbox init: ") + c);
    return true;
  }
}

// Maps ids 0..65535 of the sandbox's user namespace onto [base, base + 65536) on the host.
Status writeIdMaps(pid_t pid, uint32_t base) {
  const std::string line =
      "0 " + std::to_string(base) + " " + std::to_string(TenantIdMap::kRangeSize) + "\n";
  for (const char* map : {"uid_map", "gid_map"}) {
    std::string path = "/proc/" + std::to_string(pid) + "/" + map;
    Status st = writeControlFile(path, line);
    if (!st.isOk()) return st.withContext("write " + path);
  }
  return Status::ok();
}

Status reap(int pidfd, siginfo_t* out) {
  for (;;) {
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &si, WEXITED) == 0) {
      if (out != nullptr) *out = si;
      return Status::ok();
    }
    if (errno != EINTR) return Status::fromErrno(errno, "waitid");
  }
}

class ProcessSandbox final : public Sandbox {
 public:
  ProcessSandbox(std::string id, fs::path stateDir)
      : id_(std::move(id)), stateDir_(std::move(stateDir)) {}

  ~ProcessSandbox() override {
    kill();
    if (pidfd_ && !reaped_) {
      Status st = reap(pidfd_.get(), nullptr);
      if (!st.isOk()) SLOG_WARN("sandbox {}: reap: {}", id_, st.toString());
      reaped_ = true;
    }
    netns_.reset();
    cgroup_.reset();  // kills stragglers (none expected) and removes the cgroup directories
    if (!stateDir_.empty()) {
      // The root tmpfs and every bind mount live only in the sandbox's mount namespace, which
      // died with its last process: this is a plain directory tree again.
      Status st = removeTree(stateDir_);
      if (!st.isOk()) SLOG_WARN("sandbox {}: {}", id_, st.toString());
    }
  }

  const std::string& id() const override { return id_; }
  pid_t pid() const override { return pid_; }
  int pidFd() const override { return pidfd_.get(); }

  Result<std::optional<ExitInfo>> pollExit() override {
    if (exit_) return exit_;
    if (!pidfd_) return Status(Code::kFailedPrecondition, "sandbox " + id_ + " has no process");
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &si, WEXITED | WNOHANG) != 0) {
      return Status::fromErrno(errno, "waitid for sandbox " + id_);
    }
    if (si.si_pid == 0) return std::optional<ExitInfo>();
    reaped_ = true;
    ExitInfo info;
    if (si.si_code == CLD_EXITED) {
      info.exitCode = si.si_status;
      // The sandbox's init exits 128+signo when the command was killed by a signal (it cannot
      // re-raise it: pid 1 is immune to its own signals).
      if (info.exitCode > 128 && info.exitCode < 128 + NSIG) info.signal = info.exitCode - 128;
    } else {
      info.signal = si.si_status;
      info.exitCode = 128 + si.si_status;
    }
    info.oomKilled = cgroup_ && cgroup_->oomKilled();
    exit_ = info;
    return exit_;
  }

  void kill() override {
    // Killing pid 1 of the namespace makes the kernel kill everything else in it; the cgroup
    // sweep is the belt to those braces.
    if (pidfd_ && !reaped_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    if (cgroup_) {
      Status st = cgroup_->killAll();
      if (!st.isOk()) SLOG_WARN("sandbox {}: {}", id_, st.toString());
    }
  }

  bool oomKilled() const override { return cgroup_ && cgroup_->oomKilled(); }

  ResourceUsage usage() const override {
    ResourceUsage u;
    if (!cgroup_) return u;
    u.memoryPeakBytes = cgroup_->memoryPeakBytes();
    u.memoryCurrentBytes = cgroup_->memoryCurrentBytes();
    u.cpuTimeNs = cgroup_->cpuTimeNs();
    return u;
  }

  Result<UniqueFd> connectTcp(uint16_t port) override {
    if (!netns_) {
      // Safe against pid reuse: we have not reaped pid_, so it still names our init.
      if (reaped_ || pid_ <= 0) {
        return Status(Code::kFailedPrecondition, "sandbox " + id_ + " has exited");
      }
      std::string path = "/proc/" + std::to_string(pid_) + "/ns/net";
      netns_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!netns_) return Status::fromErrno(errno, "open " + path);
    }
    // setns() switches only the calling thread; a throwaway thread keeps the caller's thread in
    // the host namespace. The socket stays bound to the namespace it was created in.
    Status status;
    UniqueFd sock;
    std::thread t([&] {
      if (::setns(netns_.get(), CLONE_NEWNET) != 0) {
        status = Status::fromErrno(errno, "setns into the network namespace of sandbox " + id_);
        return;
      }
      sock.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!sock) {
        status = Status::fromErrno(errno, "socket in sandbox " + id_);
        return;
      }
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
          errno != EINPROGRESS) {
        status = Status::fromErrno(
            errno, "connect to 127.0.0.1:" + std::to_string(port) + " in sandbox " + id_);
        sock.reset();
      }
    });
    t.join();
    if (!status.isOk()) return status;
    return sock;
  }

  Status attachCode(const fs::path& codeDir) override {
    if (codeAttached_) {
      return Status(Code::kFailedPrecondition, "sandbox " + id_ + " already has its code");
    }
    if (reaped_ || pid_ <= 0) {
      return Status(Code::kFailedPrecondition, "sandbox " + id_ + " has exited");
    }
    if (hostKind(codeDir.string(), true) != HostKind::kDir) {
      return invalidArgument("sandbox " + id_ + ": code " + codeDir.string() +
                             " is not a directory");
    }
    // Safe against pid reuse for the same reason as connectTcp: pid_ is not reaped yet.
    std::string path = "/proc/" + std::to_string(pid_) + "/ns/mnt";
    UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) return Status::fromErrno(errno, "open " + path);
    Status st = attachDirectoryReadOnly(ns.get(), codeDir, "/code");
    if (!st.isOk()) return st.withContext("attach code to sandbox " + id_);
    codeAttached_ = true;
    return st;
  }

  // Set up by ProcessSandboxBackend::create().
  std::string id_;
  fs::path stateDir_;  // <stateDir>/<id>, removed by the destructor
  std::unique_ptr<Cgroup> cgroup_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool reaped_ = false;
  std::optional<ExitInfo> exit_;
  UniqueFd netns_;
  bool codeAttached_ = false;
};

// Everything a child needs, alive in the parent until clone() has copied it.
struct PlanStorage {
  std::deque<std::string> strings;
  std::vector<ChildOp> ops;
  std::vector<char*> argv, envp;  // init's argv, the command's environment
  ChildPlan plan;
};

}  // namespace

// The host's system directories, /etc files and device nodes, resolved once per backend: the
// ops use paths relative to the new root (the child's cwd), so they are the same for every
// sandbox.
namespace {

struct HostOps {
  std::deque<std::string> strings;
  std::vector<ChildOp> systemOps;  // /usr, /bin, /lib..., /etc
  std::vector<ChildOp> devOps;     // /proc, /dev
  UniqueFd initImage;              // sealed memfd holding stratus-sandbox-init
  std::string seccompHex;          // the seccomp program, hex for init's argv ("-": none)
};

// Copies the embedded init binary into a sealed, executable memfd (exec'd with execveat).
Result<UniqueFd> makeInitImage() {
  std::string_view image = sandbox_internal::sandboxInitImage();
  constexpr unsigned kMfdExec = 0x0010U;  // MFD_EXEC (6.3+): executable despite vm.memfd_noexec
  UniqueFd fd(::memfd_create("stratus-sandbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | kMfdExec));
  if (!fd && errno == EINVAL) {
    fd.reset(::memfd_create("stratus-sandbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  }
  if (!fd) return Status::fromErrno(errno, "memfd_create for the sandbox init");
  size_t off = 0;
  while (off < image.size()) {
    ssize_t n = ::write(fd.get(), image.data() + off, image.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::fromErrno(errno, "write the sandbox init into its memfd");
    off += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
      0) {
    return Status::fromErrno(errno, "seal the sandbox init memfd");
  }
  return fd;
}

void buildHostLayout(HostOps& layout);

}  // namespace

struct ProcessSandboxBackend::HostLayout : HostOps {};

// Network namespaces made ahead of time by one background thread: unshare(CLONE_NEWNET) on that
// thread (so the namespace is owned by the host's user namespace, exactly like one made by
// clone), loopback up, the namespace kept as an O_CLOEXEC fd, and the thread back home with
// setns. Each namespace goes to one sandbox only; those left at the end are closed (the kernel
// frees them). The thread never outlives the pool: the destructor stops and joins it.
class ProcessSandboxBackend::NetnsPool {
 public:
  explicit NetnsPool(size_t target) : target_(target) {
    thread_ = std::thread([this] { run(); });
  }
  ~NetnsPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // A fresh namespace, or an empty fd when none is ready (the caller then uses CLONE_NEWNET).
  UniqueFd take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (ready_.empty()) {
      ++fallbacks_;
      return UniqueFd();
    }
    UniqueFd fd = std::move(ready_.front());
    ready_.pop_front();
    ++taken_;
    cv_.notify_all();
    return fd;
  }

  NetnsPoolStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {ready_.size(), made_, taken_, fallbacks_};
  }

  void setRefill(bool on) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      refill_ = on;
    }
    cv_.notify_all();
  }

 private:
  void run() {
    ::pthread_setname_np(::pthread_self(), "stratus-netns");
    // Lowest priority (this thread only): making namespaces ahead of time only pays off with
    // idle CPU; on saturated cores the refill just moves copy_net_ns onto a thread competing
    // with the creates. Starved, the pool empties and create() falls back to CLONE_NEWNET. Not
    // SCHED_IDLE: the thread takes the rtnl lock, and must not sit on it unscheduled.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
    UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!home) {
      SLOG_WARN("netns pool off: open /proc/thread-self/ns/net: {}", std::strerror(errno));
      return;
    }
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (refill_ && ready_.size() < target_); });
        if (stop_) return;
      }
      Result<UniqueFd> ns = makeOne(home.get());
      if (!ns.isOk()) {
        // The pool stays empty and every create() uses CLONE_NEWNET, as without a pool.
        SLOG_WARN("netns pool off: {}", ns.status().toString());
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(std::move(ns).value());
      ++made_;
    }
  }

  // On this thread: a new namespace, its loopback up, then back to `home`. A failure to return
  // home is fatal for the thread (run() then stops): it must never make namespaces from inside
  // one it handed out.
  static Result<UniqueFd> makeOne(int home) {
    if (::unshare(CLONE_NEWNET) != 0) return Status::fromErrno(errno, "unshare(CLONE_NEWNET)");
    UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    Status st;
    if (!ns) {
      st = Status::fromErrno(errno, "open the new network namespace");
    } else if (sandbox_internal::bringLoopbackUp() != 0) {
      st = Status::fromErrno(errno, "bring up the loopback interface of a pooled namespace");
    }
    if (::setns(home, CLONE_NEWNET) != 0) {
      return Status::fromErrno(errno, "setns back into the backend's network namespace");
    }
    if (!st.isOk()) return st;
    return ns;
  }

  const size_t target_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<UniqueFd> ready_;                     // GUARDED_BY(mu_)
  bool stop_ = false;                              // GUARDED_BY(mu_)
  bool refill_ = true;                             // GUARDED_BY(mu_)
  uint64_t made_ = 0, taken_ = 0, fallbacks_ = 0;  // GUARDED_BY(mu_)
  std::thread thread_;
};

ProcessSandboxBackend::ProcessSandboxBackend(ProcessSandboxOptions options,
                                             std::unique_ptr<CgroupDriver> cgroups,
                                             std::unique_ptr<const HostLayout> host)
    : options_(std::move(options)),
      tenantIds_(options_.tenantIds),
      cgroups_(std::move(cgroups)),
      host_(std::move(host)) {
  if (options_.netnsPool > 0) netnsPool_ = std::make_unique<NetnsPool>(options_.netnsPool);
}

ProcessSandboxBackend::~ProcessSandboxBackend() {
  netnsPool_.reset();  // joins the refill thread, closes the namespaces still in the pool
  // Sandboxes may outlive the backend; their cgroups then keep the parent (rmdir says EBUSY).
  Status st = cgroups_->removeParentIfEmpty(options_.cgroupParent);
  if (!st.isOk()) SLOG_WARN("sandbox backend: {}", st.toString());
  if (options_.removeStateDirOnExit) ::rmdir(options_.stateDir.c_str());  // ENOTEMPTY: kept
}

std::string ProcessSandboxOptions::nameForDataDir(const fs::path& dataDir) {
  return "stratus-" + sha256Hex(fs::absolute(dataDir).string()).substr(0, 12);
}

ProcessSandboxOptions ProcessSandboxOptions::forDataDir(const fs::path& dataDir) {
  ProcessSandboxOptions o;
  o.cgroupParent = nameForDataDir(dataDir);
  o.stateDir = dataDir / "run" / "sandboxes";
  struct statfs sfs {};
  if (::statfs("/dev/shm", &sfs) != 0 || sfs.f_type != TMPFS_MAGIC) return o;
  const fs::path mine = fs::path("/dev/shm") / o.cgroupParent;
  if (::mkdir(mine.c_str(), 0711) != 0 && errno != EEXIST) {
    SLOG_WARN("sandbox state stays in {}: mkdir {}: {}", o.stateDir.string(), mine.string(),
              std::strerror(errno));
    return o;
  }
  struct stat st {};
  if (::lstat(mine.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & 022) != 0) {
    SLOG_WARN("sandbox state stays in {}: {} is not a directory of ours", o.stateDir.string(),
              mine.string());
    return o;
  }
  o.stateDir = mine;
  o.removeStateDirOnExit = true;
  return o;
}

Result<std::unique_ptr<ProcessSandboxBackend>> ProcessSandboxBackend::create(
    ProcessSandboxOptions options) {
  if (options.stateDir.empty() || !options.stateDir.is_absolute()) {
    return invalidArgument("sandbox stateDir must be an absolute path");
  }
  if (!validId(options.cgroupParent)) {
    return invalidArgument("cgroupParent must be [a-z0-9-]{1,48}: '" + options.cgroupParent + "'");
  }
  RETURN_IF_ERROR(makeDirs(options.stateDir, 0711));
  std::unique_ptr<CgroupDriver> cgroups;
  switch (options.cgroupVersion) {
    case 0: {
      ASSIGN_OR_RETURN(cgroups, detectCgroupDriver(options.cgroupRoot));
      break;
    }
    case 1:
      cgroups = makeCgroupV1Driver(options.cgroupRoot);
      break;
    case 2:
      cgroups = makeCgroupV2Driver(options.cgroupRoot);
      break;
    default:
      return invalidArgument("cgroupVersion must be 0 (detect), 1 or 2");
  }
  auto host = std::make_unique<HostLayout>();
  buildHostLayout(*host);
  ASSIGN_OR_RETURN(host->initImage, makeInitImage());
  host->seccompHex = "-";
  if (options.seccomp) {
    ASSIGN_OR_RETURN(std::string prog, buildSeccompProgram());
    static constexpr char kHex[] = "0123456789abcdef";
    host->seccompHex.clear();
    for (unsigned char c : prog) {
      host->seccompHex += kHex[c >> 4];
      host->seccompHex += kHex[c & 15];
    }
  }
  if (!options.tenantIds) {
    ASSIGN_OR_RETURN(options.tenantIds, TenantIdMap::open({}));
  }
  return std::unique_ptr<ProcessSandboxBackend>(
      new ProcessSandboxBackend(std::move(options), std::move(cgroups), std::move(host)));
}

namespace {

void buildHostLayout(HostOps& layout) {
  {
    PlanBuilder b(layout.strings, layout.systemOps);
    // Debian 12 is usr-merged: /bin, /sbin, /lib* are symlinks into /usr and are recreated as
    // such; on a host where they are real directories they are bind-mounted.
    for (const char* d : {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
      std::string host = std::string("/") + d;
      switch (hostKind(host, /*followSymlinks=*/false)) {
        case HostKind::kDir:
          b.bind(host, d, /*isDir=*/true, /*readOnly=*/true);
          break;
        case HostKind::kSymlink: {
          char target[PATH_MAX];
          ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
          if (n > 0) b.symlink(std::string(target, static_cast<size_t>(n)), d);
          break;
        }
        default:
          break;
      }
    }
    // A minimal /etc: what libc, Python/Node and TLS clients read. Deliberately not shadow,
    // not the host's machine-id, not anything with secrets.
    b.mkdir("etc");
    for (const char* f : {"passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "ld.so.cache",
                          "localtime", "ssl", "ca-certificates", "alternatives"}) {
      std::string host = std::string("/etc/") + f;
      HostKind k = hostKind(host, /*followSymlinks=*/true);
      if (k == HostKind::kDir || k == HostKind::kFile) {
        b.bind(host, std::string("etc/") + f, k == HostKind::kDir, /*readOnly=*/true);
      }
    }
  }
  {
    PlanBuilder b(layout.strings, layout.devOps);
    // Mounted by the child, which is pid 1 of the new pid namespace: this proc shows only the
    // sandbox's processes.
    b.mkdir("proc");
    b.mount("proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
    // runc's masks: files that leak host memory, keys or kernel internals read as /dev/null,
    // directories of host hardware are hidden under an empty read-only tmpfs, and the knobs
    // that change the host (sysctls, sysrq, irq affinity) are read-only. Only what this
    // kernel has (the list depends on its config).
    constexpr unsigned long kProcFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    for (const char* f : {"kcore", "keys", "timer_list", "timer_stats", "sched_debug",
                          "latency_stats", "interrupts"}) {
      std::string host = std::string("/proc/") + f;
      if (hostKind(host, false) == HostKind::kFile) {
        b.bindOver("/dev/null", std::string("proc/") + f, kProcFlags);
      }
    }
    for (const char* d : {"acpi", "asound", "scsi"}) {
      std::string host = std::string("/proc/") + d;
      if (hostKind(host, false) == HostKind::kDir) {
        b.mount("tmpfs", std::string("proc/") + d, MS_RDONLY | kProcFlags, "size=4k,nr_inodes=1");
      }
    }
    for (const char* p : {"bus", "fs", "irq", "sys", "sysrq-trigger"}) {
      std::string host = std::string("/proc/") + p;
      HostKind k = hostKind(host, false);
      if (k == HostKind::kDir || k == HostKind::kFile) {
        b.bindOver(std::string("proc/") + p, std::string("proc/") + p, kProcFlags);
      }
    }
    b.mkdir("dev");
    // Not nodev: the bind-mounted device nodes below keep their own (host) mount flags anyway,
    // and nothing inside can mknod.
    b.mount("tmpfs", "dev", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k,nr_inodes=64");
    for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"}) {
      std::string host = std::string("/dev/") + d;
      if (hostKind(host, true) == HostKind::kCharDev) {
        b.bind(host, std::string("dev/") + d, /*isDir=*/false, /*readOnly=*/false);
      }
    }
    b.symlink("/proc/self/fd", "dev/fd");
    b.symlink("/proc/self/fd/0", "dev/stdin");
    b.symlink("/proc/self/fd/1", "dev/stdout");
    b.symlink("/proc/self/fd/2", "dev/stderr");
    b.mkdir("dev/shm", 01777);
  }
}

}  // namespace

Result<std::unique_ptr<Sandbox>> ProcessSandboxBackend::create(const SandboxSpec& spec) {
  if (!validId(spec.id))
    return invalidArgument("sandbox id must be [a-z0-9-]{1,48}: '" + spec.id + "'");
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return invalidArgument("sandbox " + spec.id + ": empty argv");
  }
  if (spec.cwd.empty() || spec.cwd[0] != '/') {
    return invalidArgument("sandbox " + spec.id + ": cwd must be absolute");
  }
  if (spec.uid == 0 || spec.gid == 0) {
    // Without a user namespace uid 0 inside is root on the host with all capabilities; with one,
    // it would hold every capability of the namespace. The command never needs either.
    return invalidArgument("sandbox " + spec.id + ": uid/gid 0 is not allowed");
  }
  if (spec.memoryBytes < 0 || spec.tmpfsBytes <= 0 || spec.pidsMax < 0) {
    return invalidArgument("sandbox " + spec.id + ": negative limit");
  }
  const std::string ctx = "create sandbox " + spec.id;
  uint32_t idBase = 0;
  if (options_.userNamespace) {
    auto base = tenantIds_->hostIdBase(spec.tenant);
    if (!base) return base.status().withContext(ctx);
    idBase = *base;
    if (spec.uid >= TenantIdMap::kRangeSize || spec.gid >= TenantIdMap::kRangeSize) {
      return invalidArgument(ctx + ": uid/gid must be below 65536 inside a user namespace");
    }
  }

  // ---- host-side state: <stateDir>/<id>/root (the sandbox object owns it from here on).
  fs::path dir = options_.stateDir / spec.id;
  if (::mkdir(dir.c_str(), 0700) != 0)
    return Status::fromErrno(errno, ctx + ": mkdir " + dir.string());
  auto sandbox = std::make_unique<ProcessSandbox>(spec.id, dir);
  fs::path root = dir / "root";
  if (::mkdir(root.c_str(), 0755) != 0)
    return Status::fromErrno(errno, ctx + ": mkdir " + root.string());

  CgroupLimits limits;
  limits.memoryBytes = spec.memoryBytes;
  limits.pidsMax = spec.pidsMax;
  limits.cpuShares = spec.cpuShares;
  {
    auto cg = cgroups_->create(options_.cgroupParent, spec.id, limits);
    if (!cg) return cg.status().withContext(ctx);
    sandbox->cgroup_ = std::move(cg).value();
  }
  std::vector<fs::path> attach = sandbox->cgroup_->selfAttachFiles();

  // ---- the plan: every byte the child will look at, prepared before clone().
  PlanStorage st;
  st.ops.reserve(host_->systemOps.size() + host_->devOps.size() + 32 + 4 * spec.mounts.size());
  PlanBuilder b(st.strings, st.ops);
  // The inode cap keeps a flood of empty files from pinning unbounded kernel memory.
  const std::string tmpData = "mode=1777,size=" + std::to_string(spec.tmpfsBytes) + ",nr_inodes=" +
                              std::to_string(std::max<int64_t>(4096, spec.tmpfsBytes / 8192));
  // First of all the child joins its cgroup (v1), so that everything it allocates from here on
  // is charged there; the parent otherwise moves it (addProcess) before releasing the command.
  for (const auto& f : attach) {
    b.add({.kind = OpKind::kWriteFile,
           .a = b.keep(f.string()),
           .data = "0",
           .what = b.keep("join cgroup " + f.parent_path().string())});
  }
  b.add({.kind = OpKind::kMount,
         .b = "/",
         .flags = MS_REC | MS_PRIVATE,
         .what = "make the mount tree private"});
  b.add({.kind = OpKind::kMount,
         .a = "tmpfs",
         .b = b.keep(root.string()),
         .fstype = "tmpfs",
         .flags = MS_NOSUID | MS_NODEV,
         .data = "mode=755,size=1m,nr_inodes=4096",
         .what = b.keep("mount the root tmpfs at " + root.string())});
  b.add({.kind = OpKind::kChdir, .a = st.ops.back().b, .what = b.keep("chdir " + root.string())});
  for (const ChildOp& op : host_->systemOps) b.add(op);
  if (spec.codeDir.empty()) {
    b.mkdir("code");
  } else {
    if (hostKind(spec.codeDir.string(), true) != HostKind::kDir) {
      return invalidArgument(ctx + ": codeDir " + spec.codeDir.string() + " is not a directory");
    }
    b.bind(spec.codeDir.string(), "code", /*isDir=*/true, /*readOnly=*/true);
  }
  b.mkdir("tmp", 01777);
  b.mount("tmpfs", "tmp", MS_NOSUID | MS_NODEV, tmpData);
  for (const ChildOp& op : host_->devOps) b.add(op);
  b.mount("tmpfs", "dev/shm", MS_NOSUID | MS_NODEV, tmpData);

  // Caller's bind mounts; their mount points are created on the root tmpfs (or /run, /tmp).
  bool needRun = false;
  std::vector<std::string> mountRel;
  for (const BindMount& m : spec.mounts) {
    auto rel = relativeSandboxPath(m.sandboxPath);
    if (!rel) return invalidArgument(ctx + ": bad mount path '" + m.sandboxPath + "'");
    HostKind k = hostKind(m.hostPath.string(), true);
    if (k == HostKind::kAbsent) {
      return notFound(ctx + ": mount source " + m.hostPath.string() + " does not exist");
    }
    if (*rel == "run" || rel->starts_with("run/")) needRun = true;
    mountRel.push_back(*rel);
  }
  if (needRun) {
    b.mkdir("run");
    b.mount("tmpfs", "run", MS_NOSUID | MS_NODEV, "mode=755,size=1m");
  }
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    const std::string& rel = mountRel[i];
    for (size_t slash = rel.find('/'); slash != std::string::npos;
         slash = rel.find('/', slash + 1)) {
      b.mkdir(rel.substr(0, slash));
    }
    bool isDir = hostKind(spec.mounts[i].hostPath.string(), true) == HostKind::kDir;
    b.bind(spec.mounts[i].hostPath.string(), rel, isDir, spec.mounts[i].readOnly);
  }

  b.add({.kind = OpKind::kSetHostname, .a = b.keep(spec.id), .what = "sethostname"});
  // A pooled namespace already has its loopback up; joining it replaces CLONE_NEWNET.
  UniqueFd netns;
  if (netnsPool_) netns = netnsPool_->take();
  if (!netns) b.add({.kind = OpKind::kLoopbackUp, .what = "bring up the loopback interface"});
  b.add({.kind = OpKind::kPivotRoot, .what = b.keep("pivot_root into " + root.string())});
  b.add({.kind = OpKind::kUmountDetach, .a = ".", .what = "detach the old root"});
  b.add({.kind = OpKind::kChdir, .a = "/", .what = "chdir /"});
  b.add({.kind = OpKind::kMount,
         .b = "/dev",
         .flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
         .what = "remount /dev read-only"});
  b.add({.kind = OpKind::kMount, .b = "/", .flags = kRoRemount, .what = "remount / read-only"});

  // ---- init's argv (see init_main.cc) and the command's environment.
  std::string pathVar = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  bool hasPath = false;
  for (const auto& e : spec.env) {
    if (e.starts_with("PATH=")) {
      hasPath = true;
      pathVar = e.substr(5);
    }
    st.envp.push_back(const_cast<char*>(b.keep(e)));
  }
  // Like a login shell, a sandbox always has a PATH.
  if (!hasPath) st.envp.push_back(const_cast<char*>(b.keep("PATH=" + pathVar)));
  st.envp.push_back(nullptr);
  std::vector<std::string> execPaths;
  if (spec.argv[0].find('/') != std::string::npos) {
    execPaths.push_back(spec.argv[0]);
  } else {
    size_t start = 0;
    while (start <= pathVar.size()) {
      size_t end = pathVar.find(':', start);
      if (end == std::string::npos) end = pathVar.size();
      std::string d = pathVar.substr(start, end - start);
      if (!d.empty()) execPaths.push_back(d + "/" + spec.argv[0]);
      start = end + 1;
    }
  }

  // The go byte travels over a socket so that it can be sent with MSG_NOSIGNAL: a child that
  // already failed has closed its end, and a plain pipe write would SIGPIPE the whole worker.
  int syncPipe[2], errPipe[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, syncPipe) != 0) {
    return Status::fromErrno(errno, ctx + ": socketpair");
  }
  UniqueFd syncR(syncPipe[0]), syncW(syncPipe[1]);
  if (::pipe2(errPipe, O_CLOEXEC) != 0) return Status::fromErrno(errno, ctx + ": pipe");
  UniqueFd errR(errPipe[0]), errW(errPipe[1]);

  auto arg = [&](std::string s) { st.argv.push_back(const_cast<char*>(b.keep(std::move(s)))); };
  arg("stratus-sandbox-init");
  arg(std::to_string(errW.get()));
  arg(std::to_string(syncR.get()));
  arg(std::to_string(spec.stdoutFd));
  arg(std::to_string(spec.stderrFd));
  arg(std::to_string(spec.uid));
  arg(std::to_string(spec.gid));
  arg(spec.cwd);
  uint32_t initFlags = sandbox_internal::kInitCgroupNs;
  if (options_.userNamespace) initFlags |= sandbox_internal::kInitUserNs;
  arg(std::to_string(initFlags));
  arg(std::to_string(std::max<int64_t>(0, spec.openFilesMax)));
  st.argv.push_back(const_cast<char*>(host_->seccompHex.c_str()));
  arg(std::to_string(execPaths.size()));
  for (auto& p : execPaths) arg(std::move(p));
  for (const auto& a : spec.argv) arg(a);
  st.argv.push_back(nullptr);

  ChildPlan& plan = st.plan;
  plan.ops = st.ops.data();
  plan.opCount = st.ops.size();
  plan.initFd = host_->initImage.get();
  plan.initArgv = st.argv.data();
  plan.initEnvp = st.envp.data();
  plan.syncFd = syncR.get();
  plan.errorFd = errW.get();
  plan.stdoutFd = spec.stdoutFd;
  plan.stderrFd = spec.stderrFd;
  plan.netnsFd = netns ? netns.get() : -1;

  // ---- clone: CLONE_VM|CLONE_VFORK like posix_spawn -- no copy of the worker's page tables,
  // and this thread is suspended until the child has exec'd init (or failed). Signals are
  // blocked around it so that no handler of the worker ever runs on the child's side; the
  // child resets all dispositions before unblocking.
  std::unique_ptr<char[]> stack(new char[kChildStackSize]);
  // Stacks grow down; keep the top 16-byte aligned as the ABI requires.
  char* stackTop = reinterpret_cast<char*>(
      (reinterpret_cast<uintptr_t>(stack.get()) + kChildStackSize) & ~uintptr_t{15});
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  const int netFlag = netns ? 0 : CLONE_NEWNET;
  pid_t pid = ::clone(sandbox_internal::sandboxChildMain, stackTop,
                      CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS |
                          CLONE_NEWIPC | CLONE_NEWUTS | netFlag | SIGCHLD,
                      &plan, &pidfd);
  int cloneErr = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = cloneErr;
  if (pid < 0) return Status::fromErrno(errno, ctx + ": clone");
  sandbox->pid_ = static_cast<pid_t>(pid);
  sandbox->pidfd_.reset(pidfd);
  syncR.reset();
  errW.reset();
  netns.reset();  // the child holds the namespace now (or failed to join it): used once only

  // Without self-attach files the parent moves the child into the cgroup (the child sets up its
  // root meanwhile, and waits for the go byte before spawning the command). On failure, closing
  // the socket without the byte makes the child exit.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kSetupTimeoutMs);
  Status moved;
  if (attach.empty()) moved = sandbox->cgroup_->addProcess(sandbox->pid_);
  if (moved.isOk() && ::send(syncW.get(), &sandbox_internal::kSyncGo, 1, MSG_NOSIGNAL) != 1) {
    moved = Status::fromErrno(errno, "release the child");
  }
  // User namespace: init has unshared it and waits for its id maps. Only we (CAP_SETUID on the
  // host) may map a whole range. EOF instead means init failed; its error follows below.
  if (moved.isOk() && options_.userNamespace) {
    Result<bool> asked = waitForByte(syncW.get(), sandbox_internal::kSyncUserNs, deadline);
    if (!asked) return asked.status().withContext(ctx);
    if (*asked) {
      Status mapped = writeIdMaps(sandbox->pid_, idBase);
      if (!mapped.isOk()) return mapped.withContext(ctx);
      if (::send(syncW.get(), &sandbox_internal::kSyncMapped, 1, MSG_NOSIGNAL) != 1) {
        moved = Status::fromErrno(errno, "release the child");
      }
    }
  }
  // syncW stays open until the command has exec'd: init re-arms its parent-death signal after
  // changing its ids and then checks that we are still there.

  // ---- wait for execve (EOF) or a ChildError.
  ChildError err{};
  size_t got = 0;
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) {
      return Status(Code::kDeadlineExceeded, ctx + ": setup did not finish within " +
                                                 std::to_string(kSetupTimeoutMs) + " ms");
    }
    pollfd pfd{errR.get(), POLLIN, 0};
    int rc = ::poll(&pfd, 1, left);
    if (rc < 0 && errno != EINTR) return Status::fromErrno(errno, ctx + ": poll");
    if (rc <= 0) continue;
    ssize_t n = ::read(errR.get(), reinterpret_cast<char*>(&err) + got, sizeof err - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::fromErrno(errno, ctx + ": read setup status");
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got == sizeof err) break;
  }
  if (got == 0) {
    if (!moved.isOk()) return moved.withContext(ctx + ": cgroup");
    return std::unique_ptr<Sandbox>(std::move(sandbox));
  }
  if (got != sizeof err) return internalError(ctx + ": truncated setup status");

  std::string what;
  using namespace sandbox_internal;
  if (err.step >= 0 && static_cast<size_t>(err.step) < st.ops.size()) {
    what = st.ops[static_cast<size_t>(err.step)].what;
  } else {
    switch (err.step) {
      case kStepSpawn:
        what = "spawn the command";
        break;
      case kStepStdio:
        what = "set up stdin/stdout/stderr";
        break;
      case kStepSetgroups:
        what = "setgroups";
        break;
      case kStepSetgid:
        what = "setgid " + std::to_string(spec.gid);
        break;
      case kStepSetuid:
        what = "setuid " + std::to_string(spec.uid);
        break;
      case kStepNoNewPrivs:
        what = "PR_SET_NO_NEW_PRIVS";
        break;
      case kStepChdir:
        what = "chdir " + spec.cwd;
        break;
      case kStepExec:
        what = "execve " + spec.argv[0];
        break;
      case kStepOomScore:
        what = "reset oom_score_adj";
        break;
      case kStepExecInit:
        what = "exec the sandbox init";
        break;
      case kStepInitArgs:
        what = "parse the sandbox init's arguments";
        break;
      case kStepUnshare:
        what = "unshare the user and cgroup namespaces";
        break;
      case kStepUserIds:
        what = "become root of the user namespace";
        break;
      case kStepCapabilities:
        what = "clear the capability bounding set";
        break;
      case kStepRlimits:
        what = "set rlimits";
        break;
      case kStepSeccomp:
        what = "install the seccomp filter";
        break;
      case kStepJoinNetns:
        what = "join the pre-created network namespace";
        break;
      default:
        what = "step " + std::to_string(err.step);
        break;
    }
  }
  // The sandbox object's destructor kills, reaps and cleans up.
  return Status::fromErrno(err.err, ctx + ": " + what);
}

ProcessSandboxBackend::NetnsPoolStats ProcessSandboxBackend::netnsPoolStats() const {
  return netnsPool_ ? netnsPool_->stats() : NetnsPoolStats{};
}

void ProcessSandboxBackend::setNetnsPoolRefill(bool on) {
  if (netnsPool_) netnsPool_->setRefill(on);
}

Status ProcessSandboxBackend::sweepLeftovers() {
  Status first = cgroups_->removeAll(options_.cgroupParent);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.stateDir, ec)) {
    Status st = removeTree(e.path());
    if (!st.isOk() && first.isOk()) first = st;
  }
  if (ec) return Status::fromErrno(ec.value(), "list " + options_.stateDir.string());
  return first;
}

}  // namespace stratus
