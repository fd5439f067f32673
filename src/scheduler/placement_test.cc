#include "scheduler/placement.h"

#include <gtest/gtest.h>

namespace stratus {
namespace {

HostSpec host(const std::string& id, int64_t memoryMb, const std::string& zone = "a",
              int64_t cpu = 64000, int maxInstances = 1000) {
  return HostSpec{id, zone, memoryMb, cpu, maxInstances};
}

PlacementRequest req(int64_t mb, const std::string& tenant = "t1", int64_t cpu = 0) {
  PlacementRequest r;
  r.memoryMb = mb;
  r.tenant = tenant;
  r.cpuMillis = cpu;
  return r;
}

TEST(PlacementTest, BestFitPacksTheFullestHostThatFits) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  int big = p.addHost(host("big", 4096));
  int small = p.addHost(host("small", 1024));
  // 512 MB fits both; best fit takes the one with least room left.
  EXPECT_EQ(*p.place(req(512)), small);
  EXPECT_EQ(*p.place(req(512)), small);
  // small is full now.
  EXPECT_EQ(*p.place(req(512)), big);
  auto s = p.stats();
  EXPECT_EQ(s.hostsInUse, 2);
  EXPECT_EQ(s.memoryUnitsUsed, 12);
  EXPECT_EQ(s.memoryUnitsCapacity, 40);
}

TEST(PlacementTest, SpreadPicksTheEmptiestHost) {
  Placer p(PlacementStrategy::kSpread, IsolationLevel::kMixed);
  int a = p.addHost(host("a", 2048));
  int b = p.addHost(host("b", 2048));
  int first = *p.place(req(256));
  int second = *p.place(req(256));
  EXPECT_NE(first, second);
  EXPECT_TRUE((first == a && second == b) || (first == b && second == a));
}

TEST(PlacementTest, MemoryIsAllocatedIn128MbUnits) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  p.addHost(host("h", 1024));                                              // 8 units
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(p.place(req(129)).isOk()) << i;  // 2 units each
  auto full = p.place(req(1));
  ASSERT_FALSE(full.isOk());
  EXPECT_EQ(full.status().code(), Code::kResourceExhausted);
}

TEST(PlacementTest, CpuAndInstanceCountAreResourcesToo) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  int h1 = p.addHost(host("cpu-poor", 4096, "a", /*cpu=*/1000, 100));
  int h2 = p.addHost(host("roomy", 8192, "a", 8000, 2));
  EXPECT_EQ(*p.place(req(128, "t", 600)), h1);
  // cpu-poor has memory left but not 600 mCPU: skipped.
  EXPECT_EQ(*p.place(req(128, "t", 600)), h2);
  EXPECT_EQ(*p.place(req(128, "t", 300)), h1);
  // cpu-poor has 100 mCPU left.
  EXPECT_EQ(*p.place(req(128, "t", 200)), h2);
  // roomy holds its maximum of 2 instances.
  EXPECT_FALSE(p.place(req(128, "t", 200)).isOk());
  EXPECT_EQ(*p.place(req(128, "t", 100)), h1);
}

TEST(PlacementTest, TenantIsolationGivesEachTenantItsOwnHosts) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kTenant);
  int h1 = p.addHost(host("h1", 2048));
  int h2 = p.addHost(host("h2", 2048));
  int a = *p.place(req(128, "alice"));
  int b = *p.place(req(128, "bob"));
  EXPECT_NE(a, b);
  EXPECT_EQ(*p.place(req(128, "alice")), a);
  // No host left for a third tenant.
  auto carol = p.place(req(128, "carol"));
  ASSERT_FALSE(carol.isOk());
  EXPECT_NE(carol.status().message().find("tenant isolation"), std::string::npos);
  // Once bob's host is empty it may be claimed by anyone.
  p.unplace(b, req(128, "bob"));
  EXPECT_EQ(*p.place(req(128, "carol")), b);
  (void)h1;
  (void)h2;
}

TEST(PlacementTest, VpcIsolationSeparatesVpcsOfOneTenant) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kVpc);
  p.addHost(host("h1", 2048));
  p.addHost(host("h2", 2048));
  PlacementRequest v1 = req(128, "alice");
  v1.vpc = "vpc-1";
  PlacementRequest v2 = req(128, "alice");
  v2.vpc = "vpc-2";
  EXPECT_NE(*p.place(v1), *p.place(v2));
}

TEST(PlacementTest, MixedIsolationSharesHosts) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  int h = p.addHost(host("h1", 2048));
  p.addHost(host("h2", 2048));
  EXPECT_EQ(*p.place(req(128, "alice")), h);
  EXPECT_EQ(*p.place(req(128, "bob")), h);
}

TEST(PlacementTest, ZoneSpreadPutsReplicasInTheLeastUsedZone) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  int a = p.addHost(host("a1", 4096, "zone-a"));
  int b = p.addHost(host("b1", 4096, "zone-b"));
  std::vector<int> counts(p.zoneCount(), 0);
  PlacementRequest r = req(128);
  r.zoneCounts = counts;
  int first = *p.place(r);
  counts[p.zoneIndex(first)]++;
  int second = *p.place(r);
  EXPECT_NE(p.zoneIndex(first), p.zoneIndex(second));
  EXPECT_TRUE((first == a && second == b) || (first == b && second == a));
}

TEST(PlacementTest, FragmentationIsFreeMemoryStrandedOnHostsInUse) {
  Placer p(PlacementStrategy::kSpread, IsolationLevel::kMixed);
  p.addHost(host("a", 1024));
  p.addHost(host("b", 1024));
  EXPECT_DOUBLE_EQ(p.stats().fragmentation, 0.0);
  p.place(req(512)).value();
  p.place(req(512)).value();
  // Two half-used hosts: half their memory is stranded. Best fit would have used one host.
  EXPECT_DOUBLE_EQ(p.stats().fragmentation, 0.5);
  Placer packed(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  packed.addHost(host("a", 1024));
  packed.addHost(host("b", 1024));
  packed.place(req(512)).value();
  packed.place(req(512)).value();
  EXPECT_DOUBLE_EQ(packed.stats().fragmentation, 0.0);
  EXPECT_EQ(packed.stats().hostsInUse, 1);
}

TEST(PlacementTest, DeadHostsTakeNothingAndLeaveTheTotals) {
  Placer p(PlacementStrategy::kBestFit, IsolationLevel::kMixed);
  int a = p.addHost(host("a", 1024));
  int b = p.addHost(host("b", 2048));
  EXPECT_EQ(*p.place(req(128)), a);
  p.setAlive(a, false);
  EXPECT_EQ(p.stats().hosts, 1);
  EXPECT_EQ(p.stats().deadHosts, 1);
  EXPECT_EQ(p.stats().memoryUnitsCapacity, 16);
  EXPECT_EQ(*p.place(req(128)), b);
  p.unplace(a, req(128));
  // Re-registering revives it.
  EXPECT_EQ(p.addHost(host("a", 1024)), a);
  EXPECT_TRUE(p.alive(a));
  EXPECT_EQ(p.stats().memoryUnitsCapacity, 24);
  EXPECT_EQ(p.stats().memoryUnitsUsed, 1);
}

TEST(PlacementTest, ParsesNames) {
  EXPECT_EQ(*parsePlacementStrategy("spread"), PlacementStrategy::kSpread);
  EXPECT_EQ(*parseIsolationLevel("vpc"), IsolationLevel::kVpc);
  EXPECT_FALSE(parseIsolationLevel("none").isOk());
  EXPECT_FALSE(parsePlacementStrategy("random").isOk());
}

}  // namespace
}  // namespace stratus
