// Keep-alive policies: how long an idle instance is kept, and whether to let a function's
// instances go and start one again shortly before the next call is expected.
//
//   fixed            every idle instance lives `fixed` after its last call (AWS/Azure style).
//   hybrid histogram "Serverless in the Wild" (Shahrad et al., ATC'20): per function, a histogram
//                    of idle times (gap between the end of the function's last call and the next
//                    arrival), 1-minute bins over 4 hours by default. Once it is representative
//                    (enough samples, bin counts' coefficient of variation above a threshold):
//                      pre-warm window  = 5th percentile  (minus a 10 % margin)
//                      keep-alive window = 99th percentile (plus 10 %) - pre-warm window
//                    i.e. when the function goes idle its instances are released, one instance is
//                    started again after the pre-warm window and kept for the keep-alive window.
//                    Not representative yet: a standard keep-alive of the whole histogram range.
//                    Mostly out-of-range idle times: the paper forecasts the next idle time with
//                    ARIMA; we use an EWMA of the out-of-range idle times, with the paper's 15 %
//                    margins on both sides.
//
// Value types, not thread-safe; the Scheduler keeps one histogram per function under its lock.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace stratus {

enum class KeepAlivePolicy : int32_t { kFixed = 0, kHybridHistogram = 1 };

Result<KeepAlivePolicy> parseKeepAlivePolicy(std::string_view name);
const char* toString(KeepAlivePolicy p);

struct KeepAliveOptions {
  KeepAlivePolicy policy = KeepAlivePolicy::kFixed;
  Duration fixed = std::chrono::minutes(10);
  // Hybrid histogram.
  Duration binWidth = std::chrono::minutes(1);
  int bins = 240;  // range = bins * binWidth = 4 h
  double headPercentile = 0.05;
  double tailPercentile = 0.99;
  double margin = 0.10;
  int minSamples = 5;
  double cvThreshold = 2.0;
  // Share of idle times beyond the range above which the forecast replaces the histogram.
  double outOfRangeShare = 0.5;
};

struct KeepAliveWindow {
  Duration prewarm{0};    // after the function goes idle, nothing is kept for this long
  Duration keepAlive{0};  // then an instance is kept (or started) for this long
  bool fromHistogram = false;
};

class IdleTimeHistogram {
 public:
  void record(Duration idle, const KeepAliveOptions& options);
  KeepAliveWindow window(const KeepAliveOptions& options) const;
  int64_t samples() const { return inRange_ + outOfRange_; }

 private:
  std::vector<uint16_t> bins_;  // allocated on first sample: most functions never need one
  int64_t inRange_ = 0;
  int64_t outOfRange_ = 0;
  double outOfRangeEwmaNs_ = 0;
};

// The window for a function under options; histogram may be null (no idle time seen yet).
KeepAliveWindow keepAliveWindow(const KeepAliveOptions& options, const IdleTimeHistogram* h);

}  // namespace stratus
