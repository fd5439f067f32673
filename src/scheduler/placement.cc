#include "scheduler/placement.h"

#include <algorithm>

namespace stratus {
namespace {

// Bucket of hosts that hold nothing (tenant and vpc isolation): any key may claim them. The NUL
// byte keeps it apart from every real tenant or VPC name.
const std::string kEmptyKey(1, '\0');
const std::string kMixedKey;

int64_t unitsOf(int64_t memoryMb) {
  return std::max<int64_t>(1, (memoryMb + kMemoryUnitMb - 1) / kMemoryUnitMb);
}

}  // namespace

Result<PlacementStrategy> parsePlacementStrategy(std::string_view name) {
  if (name == "bestfit" || name == "best-fit") return PlacementStrategy::kBestFit;
  if (name == "spread") return PlacementStrategy::kSpread;
  return invalidArgument("unknown placement strategy '" + std::string(name) +
                         "' (bestfit | spread)");
}

Result<IsolationLevel> parseIsolationLevel(std::string_view name) {
  if (name == "tenant") return IsolationLevel::kTenant;
  if (name == "vpc") return IsolationLevel::kVpc;
  if (name == "mixed") return IsolationLevel::kMixed;
  return invalidArgument("unknown isolation level '" + std::string(name) +
                         "' (tenant | vpc | mixed)");
}

const char* toString(PlacementStrategy s) {
  return s == PlacementStrategy::kBestFit ? "bestfit" : "spread";
}

const char* toString(IsolationLevel l) {
  switch (l) {
    case IsolationLevel::kTenant:
      return "tenant";
    case IsolationLevel::kVpc:
      return "vpc";
    case IsolationLevel::kMixed:
      return "mixed";
  }
  return "?";
}

Placer::Placer(PlacementStrategy strategy, IsolationLevel isolation)
    : strategy_(strategy), isolation_(isolation) {}

std::string Placer::keyOf(const PlacementRequest& req) const {
  switch (isolation_) {
    case IsolationLevel::kTenant:
      return "t:" + req.tenant;
    case IsolationLevel::kVpc:
      return req.vpc.empty() ? "t:" + req.tenant : "v:" + req.vpc;
    case IsolationLevel::kMixed:
      return kMixedKey;
  }
  return kMixedKey;
}

const std::string& Placer::bucketOf(const Host& h) const {
  if (isolation_ == IsolationLevel::kMixed) return kMixedKey;
  return h.instances == 0 ? kEmptyKey : h.owner;
}

void Placer::indexInsert(int host) {
  Host& h = hosts_[host];
  if (!h.alive) return;
  zones_[h.zone].byKey[bucketOf(h)].insert({h.freeUnits, host});
}

void Placer::indexErase(int host) {
  Host& h = hosts_[host];
  if (!h.alive) return;
  auto& byKey = zones_[h.zone].byKey;
  auto it = byKey.find(bucketOf(h));
  if (it == byKey.end()) return;
  it->second.erase({h.freeUnits, host});
  if (it->second.empty()) byKey.erase(it);
}

int Placer::addHost(const HostSpec& spec) {
  auto known = hostById_.find(spec.id);
  if (known != hostById_.end()) {
    int idx = known->second;
    Host& h = hosts_[idx];
    bool wasAlive = h.alive;
    indexErase(idx);
    if (wasAlive) setAlive(idx, false);  // take its totals out, then put the new ones in
    int64_t usedUnits = h.spec.memoryMb / kMemoryUnitMb - h.freeUnits;
    int64_t usedCpu = h.spec.cpuMillis - h.freeCpu;
    h.spec = spec;
    h.freeUnits = spec.memoryMb / kMemoryUnitMb - usedUnits;
    h.freeCpu = spec.cpuMillis - usedCpu;
    setAlive(idx, true);
    return idx;
  }
  int zone = -1;
  for (size_t z = 0; z < zones_.size(); ++z) {
    if (zones_[z].name == spec.zone) zone = static_cast<int>(z);
  }
  if (zone < 0) {
    zones_.push_back(Zone{spec.zone, {}});
    zone = static_cast<int>(zones_.size()) - 1;
  }
  Host h;
  h.spec = spec;
  h.zone = zone;
  h.alive = false;
  h.freeUnits = spec.memoryMb / kMemoryUnitMb;
  h.freeCpu = spec.cpuMillis;
  hosts_.push_back(std::move(h));
  int idx = static_cast<int>(hosts_.size()) - 1;
  hostById_[spec.id] = idx;
  setAlive(idx, true);
  return idx;
}

void Placer::setAlive(int host, bool alive) {
  Host& h = hosts_[host];
  if (h.alive == alive) return;
  int64_t cap = h.spec.memoryMb / kMemoryUnitMb;
  int64_t used = cap - h.freeUnits;
  int sign = alive ? 1 : -1;
  if (!alive) indexErase(host);
  capacityUnits_ += sign * cap;
  usedUnits_ += sign * used;
  aliveHosts_ += sign;
  instances_ += sign * h.instances;
  if (h.instances > 0) {
    hostsInUse_ += sign;
    inUseCapacityUnits_ += sign * cap;
    inUseUsedUnits_ += sign * used;
  }
  h.alive = alive;
  if (alive) indexInsert(host);
}

int Placer::hostIndex(const std::string& id) const {
  auto it = hostById_.find(id);
  return it == hostById_.end() ? -1 : it->second;
}

int Placer::findIn(Index& index, int64_t units, int64_t cpu) const {
  auto feasible = [&](int host) {
    const Host& h = hosts_[host];
    return h.freeCpu >= cpu && h.instances < h.spec.maxInstances;
  };
  if (strategy_ == PlacementStrategy::kBestFit) {
    for (auto it = index.lower_bound({units, -1}); it != index.end(); ++it) {
      if (feasible(it->second)) return it->second;
    }
  } else {
    for (auto it = index.rbegin(); it != index.rend() && it->first >= units; ++it) {
      if (feasible(it->second)) return it->second;
    }
  }
  return -1;
}

int Placer::findInZone(Zone& zone, const std::string& key, int64_t units, int64_t cpu) {
  auto search = [&](const std::string& bucket) {
    auto it = zone.byKey.find(bucket);
    return it == zone.byKey.end() ? -1 : findIn(it->second, units, cpu);
  };
  if (isolation_ == IsolationLevel::kMixed) return search(kMixedKey);
  // Best fit fills the key's own hosts before claiming an empty one; spread prefers an empty
  // host (the least loaded there is) and only then shares one of its own.
  bool ownFirst = strategy_ == PlacementStrategy::kBestFit;
  int host = search(ownFirst ? key : kEmptyKey);
  if (host < 0) host = search(ownFirst ? kEmptyKey : key);
  return host;
}

Result<int> Placer::place(const PlacementRequest& req) {
  int64_t units = unitsOf(req.memoryMb);
  std::string key = keyOf(req);
  // Zones in order of how few instances of this function they hold (ties: zone order), so
  // replicas spread over zones first.
  int order[64];
  int nz = static_cast<int>(std::min<size_t>(zones_.size(), 64));
  for (int z = 0; z < nz; ++z) order[z] = z;
  auto count = [&](int z) {
    return z < static_cast<int>(req.zoneCounts.size()) ? req.zoneCounts[z] : 0;
  };
  std::stable_sort(order, order + nz, [&](int a, int b) { return count(a) < count(b); });
  for (int i = 0; i < nz; ++i) {
    int host = findInZone(zones_[order[i]], key, units, req.cpuMillis);
    if (host < 0) continue;
    Host& h = hosts_[host];
    int64_t cap = h.spec.memoryMb / kMemoryUnitMb;
    indexErase(host);
    if (h.instances == 0) {
      h.owner = key;
      ++hostsInUse_;
      inUseCapacityUnits_ += cap;
      inUseUsedUnits_ += cap - h.freeUnits;
    }
    h.freeUnits -= units;
    h.freeCpu -= req.cpuMillis;
    ++h.instances;
    usedUnits_ += units;
    inUseUsedUnits_ += units;
    ++instances_;
    indexInsert(host);
    return host;
  }
  return Status(Code::kResourceExhausted,
                "no host has room for " + std::to_string(units * kMemoryUnitMb) + " MB, " +
                    std::to_string(req.cpuMillis) + " mCPU" +
                    (isolation_ == IsolationLevel::kMixed
                         ? ""
                         : " under " + std::string(toString(isolation_)) + " isolation"));
}

void Placer::unplace(int host, const PlacementRequest& req) {
  Host& h = hosts_[host];
  if (h.instances == 0) return;
  int64_t units = unitsOf(req.memoryMb);
  int64_t cap = h.spec.memoryMb / kMemoryUnitMb;
  indexErase(host);
  h.freeUnits += units;
  h.freeCpu += req.cpuMillis;
  --h.instances;
  if (h.alive) {
    usedUnits_ -= units;
    inUseUsedUnits_ -= units;
    --instances_;
    if (h.instances == 0) {
      --hostsInUse_;
      inUseCapacityUnits_ -= cap;
      inUseUsedUnits_ -= cap - h.freeUnits;
    }
  }
  if (h.instances == 0) h.owner.clear();
  indexInsert(host);
}

PlacementStats Placer::stats() const {
  PlacementStats s;
  s.hosts = aliveHosts_;
  s.deadHosts = static_cast<int>(hosts_.size()) - aliveHosts_;
  s.hostsInUse = hostsInUse_;
  s.memoryUnitsCapacity = capacityUnits_;
  s.memoryUnitsUsed = usedUnits_;
  s.instances = instances_;
  if (inUseCapacityUnits_ > 0) {
    s.fragmentation =
        1.0 - static_cast<double>(inUseUsedUnits_) / static_cast<double>(inUseCapacityUnits_);
  }
  return s;
}

}  // namespace stratus
