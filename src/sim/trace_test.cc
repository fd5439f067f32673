#include "sim/trace.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace stratus::sim {
namespace {

const std::string kData = STRATUS_SIM_TESTDATA;

Result<Trace> parse2021(const std::string& text) {
  std::istringstream in(text);
  return parseAzure2021(in, "t.csv", TraceOptions{});
}

Result<Trace> parse2019(const std::string& text) {
  std::istringstream in(text);
  return parseAzure2019(in, "inv.csv", nullptr, "", nullptr, "", TraceOptions{});
}

TEST(TraceTest, Azure2021FixtureParses) {
  auto t = loadTrace(kData + "/azure2021-format-synthetic-30.csv", "azure2021", TraceOptions{});
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  EXPECT_EQ(t->invocations.size(), 29u);
  EXPECT_EQ(t->functions.size(), 14u);
  for (size_t i = 1; i < t->invocations.size(); ++i) {
    EXPECT_LE(t->invocations[i - 1].startUs, t->invocations[i].startUs);
  }
  // First row: ends at 10 s after running 9 s.
  EXPECT_EQ(t->invocations[0].startUs, 1'000'000);
  EXPECT_EQ(t->invocations[0].durationUs, 9'000'000);
  EXPECT_EQ(t->functions[0].key, "a0/f0");
  EXPECT_EQ(t->functions[0].memoryMb, 128);
}

TEST(TraceTest, Azure2021RejectsMalformedRowsWithTheLineNumber) {
  std::string header = "app,func,end_timestamp,duration\n";
  auto cols = parse2021(header + "a,f,1.0,0.5\na,f,2.0\n");
  ASSERT_FALSE(cols.isOk());
  EXPECT_EQ(cols.status().code(), Code::kInvalidArgument);
  EXPECT_NE(cols.status().message().find("t.csv:3:"), std::string::npos) << cols.status().message();
  EXPECT_NE(cols.status().message().find("4 columns"), std::string::npos);
  auto num = parse2021(header + "a,f,1.0,0.5\na,f,1.0,0.5\na,f,soon,0.5\n");
  ASSERT_FALSE(num.isOk());
  EXPECT_NE(num.status().message().find("t.csv:4: end_timestamp 'soon'"), std::string::npos)
      << num.status().message();
  auto neg = parse2021(header + "a,f,1.0,-2\n");
  ASSERT_FALSE(neg.isOk());
  EXPECT_NE(neg.status().message().find("t.csv:2: duration"), std::string::npos);
  auto badHeader = parse2021("app,function,end,duration\n");
  ASSERT_FALSE(badHeader.isOk());
  EXPECT_NE(badHeader.status().message().find("t.csv:1:"), std::string::npos);
  EXPECT_FALSE(parse2021("").isOk());
}

TEST(TraceTest, Azure2019FixtureParsesWithDurationsAndMemory) {
  TraceOptions o;
  o.seed = 7;
  auto t = loadTrace(kData + "/azure2019-format-invocations.csv", "azure2019", o);
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  ASSERT_EQ(t->functions.size(), 4u);
  EXPECT_EQ(t->invocations.size(), 1150u + 1125 + 1125 + 1125);
  // Memory rounded up to 128 MB units: 120 -> 128, 176 -> 256, 170 -> 256, 112 -> 128.
  EXPECT_EQ(t->functions[0].memoryMb, 128);
  EXPECT_EQ(t->functions[1].memoryMb, 256);
  EXPECT_EQ(t->functions[2].memoryMb, 256);
  EXPECT_EQ(t->functions[3].memoryMb, 128);
  for (const auto& inv : t->invocations) {
    ASSERT_LT(inv.startUs, 1440LL * 60 * 1'000'000);
    if (inv.function == 0) {  // 99..101 ms
      EXPECT_GE(inv.durationUs, 99'000);
      EXPECT_LE(inv.durationUs, 101'000);
    }
    if (inv.function == 1) {  // 499..501 ms
      EXPECT_GE(inv.durationUs, 499'000);
      EXPECT_LE(inv.durationUs, 501'000);
    }
  }
  // Deterministic for a seed.
  auto again = loadTrace(kData + "/azure2019-format-invocations.csv", "azure2019", o);
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->invocations[100].startUs, t->invocations[100].startUs);
}

TEST(TraceTest, Azure2019MinutesLimitTheTrace) {
  TraceOptions o;
  o.maxMinutes = 60;
  auto t = loadTrace(kData + "/azure2019-format-invocations.csv", "azure2019", o);
  ASSERT_TRUE(t.isOk());
  EXPECT_LT(t->invocations.size(), 4525u);
  EXPECT_LT(t->invocations.back().startUs, 60LL * 60 * 1'000'000);
}

TEST(TraceTest, Azure2019RejectsMalformedRowsWithTheLineNumber) {
  std::string header = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n";
  auto ok = parse2019(header + "o,a,f,http,1,0,2\n");
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  EXPECT_EQ(ok->invocations.size(), 3u);
  auto count = parse2019(header + "o,a,f,http,1,0,2\no,a,g,http,1,x,2\n");
  ASSERT_FALSE(count.isOk());
  EXPECT_NE(count.status().message().find("inv.csv:3: minute 2 count 'x'"), std::string::npos)
      << count.status().message();
  auto cols = parse2019(header + "o,a,f,http,1,0\n");
  ASSERT_FALSE(cols.isOk());
  EXPECT_NE(cols.status().message().find("inv.csv:2: expected 7 columns, got 6"), std::string::npos)
      << cols.status().message();
  auto neg = parse2019(header + "o,a,f,http,1,-1,0\n");
  EXPECT_FALSE(neg.isOk());
  std::istringstream inv(header + "o,a,f,http,1,0,2\n");
  std::istringstream dur("HashOwner,HashApp,HashFunction,Average,Count\no,a,f,abc,1\n");
  auto badDur = parseAzure2019(inv, "inv.csv", &dur, "dur.csv", nullptr, "", TraceOptions{});
  ASSERT_FALSE(badDur.isOk());
  EXPECT_NE(badDur.status().message().find("dur.csv:2: Average 'abc'"), std::string::npos)
      << badDur.status().message();
}

TEST(TraceTest, UnknownFormatAndMissingFileAreErrors) {
  EXPECT_EQ(loadTrace(kData + "/azure2021-format-synthetic-30.csv", "csv", TraceOptions{})
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_FALSE(loadTrace(kData + "/nope.csv", "azure2021", TraceOptions{}).isOk());
}

TEST(SyntheticTest, UniformIsEvenlySpaced) {
  auto spec = parseSyntheticSpec("uniform:rate=10,seconds=5,exec-ms=20");
  ASSERT_TRUE(spec.isOk());
  Trace t = generateSynthetic(*spec);
  ASSERT_EQ(t.invocations.size(), 50u);
  for (size_t i = 1; i < t.invocations.size(); ++i) {
    EXPECT_NEAR(t.invocations[i].startUs - t.invocations[i - 1].startUs, 100'000, 1);
  }
  EXPECT_EQ(t.invocations[0].durationUs, 20'000);
}

TEST(SyntheticTest, PoissonHasTheMeanRate) {
  Trace t = generateSynthetic(*parseSyntheticSpec("poisson:rate=100,seconds=100,functions=2"));
  EXPECT_NEAR(static_cast<double>(t.invocations.size()), 20000, 600);
  EXPECT_EQ(t.functions.size(), 2u);
}

TEST(SyntheticTest, ClumpedArrivalsComeInTightGroups) {
  Trace t = generateSynthetic(*parseSyntheticSpec("clumped:rate=10,seconds=2,clump=2,clump-ms=2"));
  ASSERT_EQ(t.invocations.size(), 20u);
  for (size_t i = 0; i + 1 < t.invocations.size(); i += 2) {
    EXPECT_LE(t.invocations[i + 1].startUs - t.invocations[i].startUs, 2000);
  }
}

TEST(SyntheticTest, OnOffIsSilentWhenOffAndDiurnalFollowsTheDay) {
  Trace onoff =
      generateSynthetic(*parseSyntheticSpec("onoff:rate=10,seconds=600,on=10,off=50,seed=3"));
  EXPECT_NEAR(static_cast<double>(onoff.invocations.size()), 6000, 600);
  // Gaps of ~50 s exist.
  int64_t maxGap = 0;
  for (size_t i = 1; i < onoff.invocations.size(); ++i) {
    maxGap = std::max(maxGap, onoff.invocations[i].startUs - onoff.invocations[i - 1].startUs);
  }
  EXPECT_GT(maxGap, 40'000'000);
  Trace day = generateSynthetic(
      *parseSyntheticSpec("diurnal:rate=1,seconds=86400,period=86400,amplitude=0.9"));
  int64_t firstHalf = 0;
  for (const auto& inv : day.invocations) firstHalf += inv.startUs < 43'200'000'000LL;
  // sin > 0 in the first half of the period: most calls fall there.
  EXPECT_GT(firstHalf, static_cast<int64_t>(day.invocations.size()) * 3 / 4);
}

TEST(SyntheticTest, BadSpecsAreRejected) {
  EXPECT_FALSE(parseSyntheticSpec("bursty").isOk());
  EXPECT_FALSE(parseSyntheticSpec("poisson:rate").isOk());
  EXPECT_FALSE(parseSyntheticSpec("poisson:rate=-1").isOk());
  EXPECT_FALSE(parseSyntheticSpec("poisson:colour=1").isOk());
  EXPECT_FALSE(parseSyntheticSpec("poisson:rate=0").isOk());
}

}  // namespace
}  // namespace stratus::sim
