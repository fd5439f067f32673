// Cgroups, v1 and v2 behind one interface.
//
// CgroupDriver knows where the hierarchy is mounted and creates Cgroup objects; a Cgroup owns
// one sandbox's cgroup directory (on v1: one directory per controller -- memory, pids, cpu,
// cpuacct -- all named <parent>/<id>). Destroying a Cgroup kills every process in it and removes
// the directories. detectCgroupDriver() picks v2 when /sys/fs/cgroup is a cgroup2 mount with the
// memory controller, else v1 (these machines: v1 with an empty v2 hierarchy at
// /sys/fs/cgroup/unified). Both drivers take a root path so they can be unit-tested against a
// temporary directory laid out like cgroupfs.
// Thread-safety: a driver is thread-safe; a Cgroup is owned by one sandbox.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace stratus {

struct CgroupLimits {
  int64_t memoryBytes = 0;   // 0 = unlimited; swap is disabled where the kernel allows
  int64_t pidsMax = 0;       // 0 = unlimited
  int64_t cpuShares = 1024;  // v1 cpu.shares; mapped to cpu.weight on v2
};

class Cgroup {
 public:
  virtual ~Cgroup() = default;
  virtual Status addProcess(pid_t pid) = 0;
  virtual bool oomKilled() const = 0;
  virtual int64_t memoryPeakBytes() const = 0;
  virtual int64_t memoryCurrentBytes() const = 0;
  virtual int64_t cpuTimeNs() const = 0;
  // SIGKILLs every process in the cgroup and waits (bounded) until it is empty.
  virtual Status killAll() = 0;
  // Files a single-threaded process can write "0" to in order to move itself into this cgroup
  // (v1: <dir>/tasks of each hierarchy). Moving the *current thread* skips the kernel's global
  // threadgroup lock, whose write side waits for an RCU grace period (1-15 ms) -- the cost of
  // addProcess(). Empty: use addProcess().
  virtual std::vector<std::filesystem::path> selfAttachFiles() const { return {}; }
};

class CgroupDriver {
 public:
  virtual ~CgroupDriver() = default;
  virtual int version() const = 0;  // 1 or 2
  virtual Result<std::unique_ptr<Cgroup>> create(const std::string& parent, const std::string& id,
                                                 const CgroupLimits& limits) = 0;
  // Kills and removes every cgroup under parent (startup sweep after a crash).
  virtual Status removeAll(const std::string& parent) = 0;
  // Removes the parent's directories if no cgroup is left under them (the kernel refuses to
  // remove a cgroup with children, so this never disturbs a live sandbox). Not there: OK.
  virtual Status removeParentIfEmpty(const std::string& parent) { return Status::ok(); }
};

// root: "/sys/fs/cgroup" in production, a temporary directory in tests.
std::unique_ptr<CgroupDriver> makeCgroupV1Driver(std::filesystem::path root);
std::unique_ptr<CgroupDriver> makeCgroupV2Driver(std::filesystem::path root);
Result<std::unique_ptr<CgroupDriver>> detectCgroupDriver(
    const std::filesystem::path& root = "/sys/fs/cgroup");

}  // namespace stratus
