// Placement: which host gets a new instance (seed 1.2, 2.6; DESIGN.md section 3).
//
// Multi-resource: memory in 128 MB units, CPU share (millicores) and an instance count per
// host. Best-fit packs an instance onto the feasible host with the least free memory (few hosts
// busy, whole hosts left free for big functions); spread picks the one with the most (short
// blast radius, less noisy neighbours). Zones: the caller passes how many instances the function
// already has per zone and the zone with the fewest that can take the instance wins, so a
// function spreads across zones before it packs within one.
//
// Isolation: `tenant` (a host holds one tenant's sandboxes at a time), `vpc` (one VPC at a time;
// functions without a VPC are grouped by tenant), `mixed` (anything shares). A host belongs to an
// isolation key while it holds an instance and is free again once empty.
//
// Hosts are indexed per (zone, isolation key) by free memory, so a placement is O(log hosts) plus
// the hosts skipped for CPU or instance count. Not thread-safe: the Scheduler owns one under its
// mutex; tests and the simulator may use one directly.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace stratus {

inline constexpr int64_t kMemoryUnitMb = 128;

enum class PlacementStrategy : int32_t { kBestFit = 0, kSpread = 1 };
enum class IsolationLevel : int32_t { kTenant = 0, kVpc = 1, kMixed = 2 };

Result<PlacementStrategy> parsePlacementStrategy(std::string_view name);
Result<IsolationLevel> parseIsolationLevel(std::string_view name);
const char* toString(PlacementStrategy s);
const char* toString(IsolationLevel l);

struct HostSpec {
  std::string id;
  std::string zone = "default";
  int64_t memoryMb = 0;   // schedulable memory for sandboxes
  int64_t cpuMillis = 0;  // 1000 per core
  int maxInstances = 0;
};

struct PlacementRequest {
  int64_t memoryMb = 128;  // rounded up to 128 MB units
  int64_t cpuMillis = 0;
  std::string tenant;
  std::string vpc;  // empty: no VPC
  // Instances of this function already placed, indexed by zone index (may be shorter than the
  // zone list; missing entries count 0).
  std::span<const int> zoneCounts;
};

struct PlacementStats {
  int hosts = 0;  // alive
  int deadHosts = 0;
  int hostsInUse = 0;               // alive and holding at least one instance
  int64_t memoryUnitsCapacity = 0;  // alive hosts
  int64_t memoryUnitsUsed = 0;
  int64_t instances = 0;
  // Free memory stranded on hosts in use, as a share of those hosts' memory: what packing could
  // still reclaim. 0 when every host in use is full (or none is in use).
  double fragmentation = 0;
};

class Placer {
 public:
  Placer(PlacementStrategy strategy, IsolationLevel isolation);

  // Adds a host, or revives and resizes a known one (a worker that re-registers). Returns its
  // index, stable for the Placer's lifetime.
  int addHost(const HostSpec& spec);
  // A dead host takes no placements; what it held is released by the caller with unplace().
  void setAlive(int host, bool alive);
  bool alive(int host) const { return hosts_[host].alive; }
  int hostIndex(const std::string& id) const;  // -1 if unknown
  const HostSpec& host(int index) const { return hosts_[index].spec; }
  size_t hostCount() const { return hosts_.size(); }
  int zoneIndex(int host) const { return hosts_[host].zone; }
  size_t zoneCount() const { return zones_.size(); }
  const std::string& zoneName(int zone) const { return zones_[zone].name; }

  // Reserves room for one instance; kResourceExhausted when no alive host can take it.
  Result<int> place(const PlacementRequest& req);
  // Returns what place() reserved on host (same memory, cpu and isolation key).
  void unplace(int host, const PlacementRequest& req);
  // Instances currently placed on host.
  int instancesOn(int host) const { return hosts_[host].instances; }

  PlacementStats stats() const;

 private:
  struct Host {
    HostSpec spec;
    int zone = 0;
    bool alive = true;
    int64_t freeUnits = 0;
    int64_t freeCpu = 0;
    int instances = 0;
    std::string owner;  // isolation key while instances > 0 (not used for kMixed)
  };
  using Index = std::set<std::pair<int64_t, int>>;  // (free units, host)
  struct Zone {
    std::string name;
    std::unordered_map<std::string, Index> byKey;  // isolation key (or kEmptyKey) -> hosts
  };

  std::string keyOf(const PlacementRequest& req) const;
  const std::string& bucketOf(const Host& h) const;
  void indexInsert(int host);
  void indexErase(int host);
  int findIn(Index& index, int64_t units, int64_t cpu) const;
  int findInZone(Zone& zone, const std::string& key, int64_t units, int64_t cpu);

  const PlacementStrategy strategy_;
  const IsolationLevel isolation_;
  std::vector<Host> hosts_;
  std::vector<Zone> zones_;
  std::unordered_map<std::string, int> hostById_;
  // Running totals for O(1) stats.
  int64_t capacityUnits_ = 0;
  int64_t usedUnits_ = 0;
  int64_t inUseCapacityUnits_ = 0;
  int64_t inUseUsedUnits_ = 0;
  int hostsInUse_ = 0;
  int aliveHosts_ = 0;
  int64_t instances_ = 0;
};

}  // namespace stratus
