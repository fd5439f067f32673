#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// How long killAll() and rmdir wait for the kernel to finish tearing processes down. SIGKILLed
// processes normally leave within a millisecond; a process stuck in uninterruptible sleep (a hung
// FUSE mount) is the reason this is bounded.
constexpr auto kTeardownDeadline = std::chrono::seconds(5);

bool pathExists(const fs::path& p) { return ::access(p.c_str(), F_OK) == 0; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// A cgroup file read again and again (accounting reads a few per invocation): opened on first
// use, then pread at offset 0, for which kernfs regenerates the content. Opening cgroupfs paths
// per read (path walk, kernfs permission and revalidation) was a fifth of the server's CPU per
// warm call. A file that cannot be opened yet is retried on the next read. Thread-safe.
class StatFile {
 public:
  void setPath(fs::path path) {
    std::lock_guard lock(mu_);
    path_ = std::move(path);
    fd_.reset();
  }
  std::optional<std::string> read() const {
    std::lock_guard lock(mu_);
    if (!fd_) {
      if (path_.empty()) return std::nullopt;
      fd_.reset(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd_) return std::nullopt;
    }
    char buf[4096];
    ssize_t n = ::pread(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  void close() {
    std::lock_guard lock(mu_);
    fd_.reset();
  }

 private:
  fs::path path_;
  mutable std::mutex mu_;
  mutable UniqueFd fd_;  // GUARDED_BY(mu_)
};

// Parses an integer knob; "max" (v2's "unlimited") reads as INT64_MAX. Absent or garbage: 0.
int64_t parseInt(const std::optional<std::string>& content) {
  if (!content) return 0;
  std::string_view s = trim(*content);
  if (s == "max") return INT64_MAX;
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::optional<std::string> readOptional(const fs::path& p) {
  auto content = readFile(p);
  if (!content) return std::nullopt;
  return std::move(content).value();
}

int64_t readInt(const fs::path& p) { return parseInt(readOptional(p)); }

// The value of `key` in a flat-keyed file's content ("oom_kill 3\n..."). Absent: 0.
int64_t parseKeyed(const std::optional<std::string>& content, std::string_view key) {
  if (!content) return 0;
  std::string_view rest = *content;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      std::string_view v = trim(line.substr(key.size() + 1));
      int64_t n = 0;
      std::from_chars(v.data(), v.data() + v.size(), n);
      return n;
    }
  }
  return 0;
}

int64_t readKeyed(const fs::path& p, std::string_view key) {
  return parseKeyed(readOptional(p), key);
}

std::vector<std::string> readTokens(const fs::path& p) {
  std::vector<std::string> out;
  auto content = readFile(p);
  if (!content) return out;
  std::string_view s = *content;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\n' && s[j] != '\t') ++j;
    if (j > i) {
      std::string_view tok = s.substr(i, j - i);
      if (tok.front() == '+') tok.remove_prefix(1);
      out.emplace_back(tok);
    }
    i = j;
  }
  return out;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Writes a v2 control file. O_CREAT|O_TRUNC is harmless on cgroupfs (the knob exists; kernfs
// ignores the truncation -- systemd has always opened knobs this way) and lets the v2 driver be
// unit-tested against a plain directory laid out like cgroupfs.
Status writeKnob(const fs::path& p, std::string_view v) {
  UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Status::fromErrno(errno, "open " + p.string());
  if (::write(fd.get(), v.data(), v.size()) < 0) {
    return Status::fromErrno(errno, "write '" + std::string(v) + "' to " + p.string());
  }
  return Status::ok();
}

std::vector<pid_t> readPids(const fs::path& procs) {
  std::vector<pid_t> out;
  auto content = readFile(procs);
  if (!content) return out;
  std::string_view s = *content;
  while (!s.empty()) {
    size_t nl = s.find('\n');
    std::string_view line = trim(s.substr(0, nl));
    s = nl == std::string_view::npos ? std::string_view() : s.substr(nl + 1);
    pid_t pid = 0;
    if (!line.empty() &&
        std::from_chars(line.data(), line.data() + line.size(), pid).ec == std::errc() && pid > 0) {
      out.push_back(pid);
    }
  }
  return out;
}

// Backoff used while waiting on the kernel: starts at 50us, caps at 5ms.
class Backoff {
 public:
  void wait() {
    std::this_thread::sleep_for(delay_);
    delay_ = std::min(delay_ * 2, std::chrono::microseconds(5000));
  }

 private:
  std::chrono::microseconds delay_{50};
};

// SIGKILLs every process listed in the cgroup.procs of `dirs` until all are empty. `killFile`
// (v2 cgroup.kill), when non-empty, is written first: it kills atomically, without the
// read-pids-then-kill race against pid reuse.
Status killAndWait(const std::vector<fs::path>& dirs, const fs::path& killFile) {
  if (!killFile.empty()) {
    Status st = writeKnob(killFile, "1");
    if (!st.isOk() && st.sysErrno() != ENOENT) return st;
  }
  auto deadline = Clock::now() + kTeardownDeadline;
  Backoff backoff;
  for (;;) {
    bool any = false;
    for (const auto& d : dirs) {
      for (pid_t pid : readPids(d / "cgroup.procs")) {
        any = true;
        ::kill(pid, SIGKILL);
      }
    }
    if (!any) return Status::ok();
    if (Clock::now() > deadline) {
      return Status(Code::kDeadlineExceeded,
                    "processes of cgroup " + dirs.front().string() + " survive SIGKILL");
    }
    backoff.wait();
  }
}

// rmdir that tolerates the kernel's brief EBUSY while killed tasks finish exiting.
Status removeCgroupDir(const fs::path& dir) {
  auto deadline = Clock::now() + kTeardownDeadline;
  Backoff backoff;
  for (;;) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return Status::ok();
    if (errno != EBUSY || Clock::now() > deadline) {
      return Status::fromErrno(errno, "rmdir " + dir.string());
    }
    backoff.wait();
  }
}

// rmdir that treats "still has children" and "already gone" as success.
Status removeIfEmpty(const fs::path& dir) {
  if (::rmdir(dir.c_str()) == 0 || errno == ENOENT || errno == EBUSY || errno == ENOTEMPTY) {
    return Status::ok();
  }
  return Status::fromErrno(errno, "rmdir " + dir.string());
}

Status makeDir(const fs::path& dir, bool existOk) {
  if (::mkdir(dir.c_str(), 0755) == 0 || (existOk && errno == EEXIST)) return Status::ok();
  return Status::fromErrno(errno, "mkdir " + dir.string());
}

std::vector<fs::path> childDirs(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec)) out.push_back(e.path());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// cgroup v1: one directory per hierarchy.

class CgroupV1 final : public Cgroup {
 public:
  ~CgroupV1() override {
    if (dirs_.empty()) return;
    closeStats();
    Status st = killAll();
    if (!st.isOk()) SLOG_WARN("cgroup teardown: {}", st.toString());
    for (const auto& d : dirs_) {
      st = removeCgroupDir(d);
      if (!st.isOk()) SLOG_WARN("cgroup teardown: {}", st.toString());
    }
  }

  Status addProcess(pid_t pid) override {
    std::string s = std::to_string(pid);
    for (const auto& d : dirs_) {
      RETURN_IF_ERROR(writeControlFile(d / "cgroup.procs", s));
    }
    return Status::ok();
  }
  bool oomKilled() const override { return parseKeyed(oomControl_.read(), "oom_kill") > 0; }
  int64_t memoryPeakBytes() const override { return parseInt(memoryPeak_.read()); }
  int64_t memoryCurrentBytes() const override { return parseInt(memoryCurrent_.read()); }
  int64_t cpuTimeNs() const override { return parseInt(cpuUsage_.read()); }
  // Called once the directories' paths are known (empty path: that controller is absent).
  void openStats() {
    auto in = [](const fs::path& dir, const char* file) { return dir.empty() ? dir : dir / file; };
    oomControl_.setPath(in(memory_, "memory.oom_control"));
    memoryPeak_.setPath(in(memory_, "memory.max_usage_in_bytes"));
    memoryCurrent_.setPath(in(memory_, "memory.usage_in_bytes"));
    cpuUsage_.setPath(in(cpuacct_, "cpuacct.usage"));
  }
  void closeStats() {
    for (StatFile* f : {&oomControl_, &memoryPeak_, &memoryCurrent_, &cpuUsage_}) f->close();
  }
  Status killAll() override { return killAndWait(dirs_, {}); }
  std::vector<fs::path> selfAttachFiles() const override {
    std::vector<fs::path> out;
    for (const auto& d : dirs_) out.push_back(d / "tasks");
    return out;
  }

  std::vector<fs::path> dirs_;  // one per distinct hierarchy, created by us
  fs::path memory_, pids_, cpu_, cpuacct_;
  StatFile oomControl_, memoryPeak_, memoryCurrent_, cpuUsage_;
};

class CgroupV1Driver final : public CgroupDriver {
 public:
  explicit CgroupV1Driver(fs::path root) : root_(std::move(root)) {
    // cpu and cpuacct are often co-mounted as "cpu,cpuacct" with "cpu" and "cpuacct" symlinks
    // to it; resolve every controller to its hierarchy and create each directory only once.
    auto resolve = [&](std::initializer_list<const char*> names) -> fs::path {
      for (const char* n : names) {
        std::error_code ec;
        fs::path p = root_ / n;
        if (fs::is_directory(p, ec)) {
          fs::path c = fs::canonical(p, ec);
          return ec ? p : c;
        }
      }
      return {};
    };
    memory_ = resolve({"memory"});
    pids_ = resolve({"pids"});
    cpu_ = resolve({"cpu", "cpu,cpuacct", "cpuacct,cpu"});
    cpuacct_ = resolve({"cpuacct", "cpu,cpuacct", "cpuacct,cpu"});
    for (const fs::path* h : {&memory_, &pids_, &cpu_, &cpuacct_}) {
      if (!h->empty() &&
          std::find(hierarchies_.begin(), hierarchies_.end(), *h) == hierarchies_.end()) {
        hierarchies_.push_back(*h);
      }
    }
  }

  int version() const override { return 1; }

  Result<std::unique_ptr<Cgroup>> create(const std::string& parent, const std::string& id,
                                         const CgroupLimits& limits) override {
    if (hierarchies_.empty()) return notFound("no cgroup v1 hierarchy under " + root_.string());
    auto cg = std::make_unique<CgroupV1>();
    for (const auto& h : hierarchies_) {
      RETURN_IF_ERROR(makeDir(h / parent, /*existOk=*/true));
      fs::path dir = h / parent / id;
      RETURN_IF_ERROR(makeDir(dir, /*existOk=*/false));
      cg->dirs_.push_back(dir);  // from here on the destructor removes it
    }
    auto under = [&](const fs::path& h) { return h.empty() ? h : h / parent / id; };
    cg->memory_ = under(memory_);
    cg->pids_ = under(pids_);
    cg->cpu_ = under(cpu_);
    cg->cpuacct_ = under(cpuacct_);
    cg->openStats();

    if (!cg->memory_.empty() && limits.memoryBytes > 0) {
      std::string v = std::to_string(limits.memoryBytes);
      RETURN_IF_ERROR(writeControlFile(cg->memory_ / "memory.limit_in_bytes", v));
      // memsw (memory+swap) must be >= the memory limit, so it is written second; equal means
      // no swap. The file is absent when the kernel has no swap accounting.
      if (pathExists(cg->memory_ / "memory.memsw.limit_in_bytes")) {
        RETURN_IF_ERROR(writeControlFile(cg->memory_ / "memory.memsw.limit_in_bytes", v));
      }
      // Not writable under a parent with use_hierarchy and children; best effort.
      (void)writeControlFile(cg->memory_ / "memory.swappiness", "0");
    }
    if (!cg->pids_.empty() && limits.pidsMax > 0) {
      RETURN_IF_ERROR(writeControlFile(cg->pids_ / "pids.max", std::to_string(limits.pidsMax)));
    }
    if (!cg->cpu_.empty() && limits.cpuShares > 0) {
      int64_t shares = std::clamp<int64_t>(limits.cpuShares, 2, 262144);
      RETURN_IF_ERROR(writeControlFile(cg->cpu_ / "cpu.shares", std::to_string(shares)));
    }
    return std::unique_ptr<Cgroup>(std::move(cg));
  }

  Status removeAll(const std::string& parent) override {
    Status first;
    for (const auto& h : hierarchies_) {
      fs::path p = h / parent;
      for (const auto& child : childDirs(p)) {
        Status st = killAndWait({child}, {});
        if (st.isOk()) st = removeCgroupDir(child);
        if (!st.isOk() && first.isOk()) first = st;
      }
      Status st = removeCgroupDir(p);
      if (!st.isOk() && first.isOk()) first = st;
    }
    return first;
  }

  Status removeParentIfEmpty(const std::string& parent) override {
    for (const auto& h : hierarchies_) RETURN_IF_ERROR(removeIfEmpty(h / parent));
    return Status::ok();
  }

 private:
  fs::path root_;
  fs::path memory_, pids_, cpu_, cpuacct_;
  std::vector<fs::path> hierarchies_;
};

// ---------------------------------------------------------------------------------------------
// cgroup v2: one directory in the unified hierarchy.

class CgroupV2 final : public Cgroup {
 public:
  ~CgroupV2() override {
    if (dir_.empty()) return;
    for (StatFile* f : {&memoryEvents_, &memoryPeak_, &memoryCurrent_, &cpuStat_}) f->close();
    Status st = killAll();
    if (!st.isOk()) SLOG_WARN("cgroup teardown: {}", st.toString());
    st = removeCgroupDir(dir_);
    if (!st.isOk()) SLOG_WARN("cgroup teardown: {}", st.toString());
  }
  Status addProcess(pid_t pid) override {
    return writeKnob(dir_ / "cgroup.procs", std::to_string(pid));
  }
  bool oomKilled() const override { return parseKeyed(memoryEvents_.read(), "oom_kill") > 0; }
  int64_t memoryPeakBytes() const override {
    // memory.peak appeared in Linux 5.19; older kernels only have the current value.
    return parseInt((hasPeak_ ? memoryPeak_ : memoryCurrent_).read());
  }
  int64_t memoryCurrentBytes() const override { return parseInt(memoryCurrent_.read()); }
  int64_t cpuTimeNs() const override { return parseKeyed(cpuStat_.read(), "usage_usec") * 1000; }
  void openStats() {
    memoryEvents_.setPath(dir_ / "memory.events");
    memoryPeak_.setPath(dir_ / "memory.peak");
    memoryCurrent_.setPath(dir_ / "memory.current");
    cpuStat_.setPath(dir_ / "cpu.stat");
  }
  Status killAll() override {
    return killAndWait({dir_}, hasKill_ ? dir_ / "cgroup.kill" : fs::path());
  }

  fs::path dir_;
  bool hasKill_ = false;
  bool hasPeak_ = false;
  StatFile memoryEvents_, memoryPeak_, memoryCurrent_, cpuStat_;
};

class CgroupV2Driver final : public CgroupDriver {
 public:
  explicit CgroupV2Driver(fs::path root) : root_(std::move(root)) {}
  int version() const override { return 2; }

  Result<std::unique_ptr<Cgroup>> create(const std::string& parent, const std::string& id,
                                         const CgroupLimits& limits) override {
    fs::path p = root_ / parent;
    {
      // Serialised so that concurrent creates do not interleave read-modify-write of
      // cgroup.subtree_control.
      std::lock_guard lock(mu_);
      RETURN_IF_ERROR(makeDir(p, /*existOk=*/true));
      RETURN_IF_ERROR(enableControllers(root_));
      RETURN_IF_ERROR(enableControllers(p));
    }
    auto cg = std::make_unique<CgroupV2>();
    fs::path dir = p / id;
    RETURN_IF_ERROR(makeDir(dir, /*existOk=*/false));
    cg->dir_ = dir;
    // A child cgroup has the knobs of the controllers its parent enables for it, and the same
    // optional files (memory.swap.max, memory.peak, cgroup.kill) as its non-root parent.
    std::vector<std::string> enabled = readTokens(p / "cgroup.subtree_control");
    cg->hasKill_ = pathExists(p / "cgroup.kill");
    cg->hasPeak_ = pathExists(p / "memory.peak");
    cg->openStats();
    if (contains(enabled, "memory")) {
      if (limits.memoryBytes > 0) {
        RETURN_IF_ERROR(writeKnob(dir / "memory.max", std::to_string(limits.memoryBytes)));
      }
      if (pathExists(p / "memory.swap.max"))
        RETURN_IF_ERROR(writeKnob(dir / "memory.swap.max", "0"));
    }
    if (contains(enabled, "pids") && limits.pidsMax > 0) {
      RETURN_IF_ERROR(writeKnob(dir / "pids.max", std::to_string(limits.pidsMax)));
    }
    if (contains(enabled, "cpu") && limits.cpuShares > 0) {
      RETURN_IF_ERROR(
          writeKnob(dir / "cpu.weight", std::to_string(cpuSharesToWeight(limits.cpuShares))));
    }
    return std::unique_ptr<Cgroup>(std::move(cg));
  }

  Status removeAll(const std::string& parent) override {
    fs::path p = root_ / parent;
    Status first;
    for (const auto& child : childDirs(p)) {
      fs::path kill = pathExists(child / "cgroup.kill") ? child / "cgroup.kill" : fs::path();
      Status st = killAndWait({child}, kill);
      if (st.isOk()) st = removeCgroupDir(child);
      if (!st.isOk() && first.isOk()) first = st;
    }
    Status st = removeCgroupDir(p);
    if (!st.isOk() && first.isOk()) first = st;
    return first;
  }

  Status removeParentIfEmpty(const std::string& parent) override {
    return removeIfEmpty(root_ / parent);
  }

  // runc's linear map of the v1 range [2, 262144] onto the v2 range [1, 10000]. Only ratios
  // between sibling cgroups matter, and a linear map keeps them.
  static int64_t cpuSharesToWeight(int64_t shares) {
    shares = std::clamp<int64_t>(shares, 2, 262144);
    return 1 + (shares - 2) * 9999 / 262142;
  }

 private:
  // Enables memory, pids and cpu for the children of `dir` (those of them that `dir` has).
  Status enableControllers(const fs::path& dir) {
    std::vector<std::string> available = readTokens(dir / "cgroup.controllers");
    std::vector<std::string> enabled = readTokens(dir / "cgroup.subtree_control");
    std::string add;
    for (const char* c : {"cpu", "memory", "pids"}) {
      if (contains(available, c) && !contains(enabled, c)) {
        if (!add.empty()) add += ' ';
        add += '+';
        add += c;
      }
    }
    if (add.empty()) return Status::ok();
    return writeKnob(dir / "cgroup.subtree_control", add);
  }

  fs::path root_;
  std::mutex mu_;
};

}  // namespace

std::unique_ptr<CgroupDriver> makeCgroupV1Driver(std::filesystem::path root) {
  return std::make_unique<CgroupV1Driver>(std::move(root));
}

std::unique_ptr<CgroupDriver> makeCgroupV2Driver(std::filesystem::path root) {
  return std::make_unique<CgroupV2Driver>(std::move(root));
}

Result<std::unique_ptr<CgroupDriver>> detectCgroupDriver(const std::filesystem::path& root) {
  if (contains(readTokens(root / "cgroup.controllers"), "memory")) {
    return makeCgroupV2Driver(root);
  }
  std::error_code ec;
  if (fs::is_directory(root / "memory", ec)) return makeCgroupV1Driver(root);
  return notFound("no usable cgroup hierarchy at " + root.string() +
                  " (neither cgroup2 with the memory controller nor a v1 memory hierarchy)");
}

}  // namespace stratus
