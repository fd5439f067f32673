// TenantIdMap: which host uids/gids a tenant's sandboxes run as.
//
// Each tenant gets a range of kRangeSize host ids; a sandbox's user namespace maps ids
// 0..kRangeSize-1 inside onto that range, so root inside is an unprivileged uid on the host and
// two tenants never share a host uid (a process that escapes its mount namespace still meets
// file permissions as a stranger, and cannot signal or ptrace another tenant's processes).
// Ranges start at firstHostId (default 2^24, far above login users and the usual
// /etc/subuid ranges) and are handed out in order of first use. With a file, the assignment is
// persisted (one "index tenant" line per tenant, fsync'd before use) so a tenant keeps its range
// across restarts -- files it owns on disk (its code cache) stay its own.
// Thread-safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"

namespace stratus {

class TenantIdMap {
 public:
  static constexpr uint32_t kRangeSize = 65536;
  static constexpr uint32_t kDefaultFirstHostId = 1u << 24;

  // file empty: in memory only.
  static Result<std::unique_ptr<TenantIdMap>> open(std::filesystem::path file,
                                                   uint32_t firstHostId = kDefaultFirstHostId);
  // The first host id of the tenant's range, assigning one on first use.
  Result<uint32_t> hostIdBase(const std::string& tenant);
  // The host uid that id `inside` of the tenant's sandboxes has (e.g. its code cache owner).
  Result<uint32_t> hostId(const std::string& tenant, uint32_t inside) {
    ASSIGN_OR_RETURN(uint32_t base, hostIdBase(tenant));
    return base + inside;
  }

 private:
  TenantIdMap(std::filesystem::path file, uint32_t first) : file_(std::move(file)), first_(first) {}
  std::filesystem::path file_;
  uint32_t first_;
  std::mutex mu_;
  std::map<std::string, uint32_t> index_;  // GUARDED_BY(mu_)
};

}  // namespace stratus
