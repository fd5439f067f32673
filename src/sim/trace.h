// Traces for the simulator: the public Azure Functions formats and synthetic generators.
//
//   Azure Functions 2021  one row per invocation, `app,func,end_timestamp,duration` (seconds);
//                         the start is end - duration.
//   Azure Functions 2019  per-minute counts `HashOwner,HashApp,HashFunction,Trigger,1..1440`,
//                         with the durations file (Average, percentiles in ms) and the memory file
//                         (AverageAllocatedMb, per app in the real trace, per function in some
//                         derived ones: both are accepted). Arrivals inside a minute are spread
//                         uniformly at random (seeded), durations drawn from the percentiles.
//   synthetic             poisson | uniform | onoff | diurnal | clumped (the seed's millisecond
//                         clumping: k arrivals within a few ms, the clumps evenly spaced).
//
// A malformed row is kInvalidArgument naming the file and line. Everything here is a pure
// function of its input and seed. Function keys are short ("a12/f345") so that scheduler leases
// stay in the small-string buffer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <vector>

#include "common/status.h"

namespace stratus::sim {

struct SimFunction {
  std::string key;     // "tenant/name"
  std::string tenant;  // owner (2019) or app (2021)
  int memoryMb = 128;
  int concurrency = 1;
};

struct Invocation {
  int64_t startUs = 0;
  int64_t durationUs = 0;
  int32_t function = 0;  // index into Trace::functions
};

struct Trace {
  std::vector<SimFunction> functions;
  std::vector<Invocation> invocations;  // sorted by startUs
};

struct TraceOptions {
  int defaultMemoryMb = 128;  // when the trace says nothing about memory
  int concurrency = 1;
  uint64_t seed = 1;
  int maxMinutes = 1440;  // 2019: simulate only the first N minutes
};

// Azure 2021. `name` is used in error messages.
Result<Trace> parseAzure2021(std::istream& in, const std::string& name,
                             const TraceOptions& options);
// Azure 2019. durations and memory may be null (defaults: 1 s, defaultMemoryMb).
Result<Trace> parseAzure2019(std::istream& invocations, const std::string& name,
                             std::istream* durations, const std::string& durationsName,
                             std::istream* memory, const std::string& memoryName,
                             const TraceOptions& options);
// Loads a trace file; for azure2019, FILE is the invocations file and the durations and memory
// files are found beside it (the word "invocations" in the name replaced by "durations" and
// "memory"), unless given.
Result<Trace> loadTrace(const std::filesystem::path& file, const std::string& format,
                        const TraceOptions& options, const std::filesystem::path& durations = {},
                        const std::filesystem::path& memory = {});

struct SyntheticSpec {
  std::string kind = "poisson";  // poisson | uniform | onoff | diurnal | clumped
  int functions = 1;
  int tenants = 10;     // function i belongs to tenant i % tenants
  double rate = 1;      // mean arrivals per second per function
  double seconds = 60;  // length of the trace
  double execMs = 100;  // execution time
  bool execExponential = false;
  int memoryMb = 128;
  int concurrency = 1;
  double onSeconds = 10;  // onoff: rate while on (average rate = rate)
  double offSeconds = 50;
  double periodSeconds = 86400;  // diurnal: period; rate varies (1 +- amplitude)
  double amplitude = 0.9;
  int clump = 2;       // clumped: arrivals per clump
  double clumpMs = 2;  // clumped: spread of one clump
  uint64_t seed = 1;
  // warmup=1: each function's first call comes alone 1 s before the pattern starts, so the
  // scheduler has measured execution time when the pattern begins (as for a function in steady
  // use, which is what the seed's figures show).
  bool warmup = false;
};

// "poisson:rate=10,functions=100,seconds=60,exec-ms=100" (keys as the fields above, dashed).
Result<SyntheticSpec> parseSyntheticSpec(const std::string& text);
Trace generateSynthetic(const SyntheticSpec& spec);

}  // namespace stratus::sim
