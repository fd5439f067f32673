#include "scheduler/keep_alive.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace stratus {

Result<KeepAlivePolicy> parseKeepAlivePolicy(std::string_view name) {
  if (name == "fixed") return KeepAlivePolicy::kFixed;
  if (name == "hybrid" || name == "histogram" || name == "hybrid-histogram") {
    return KeepAlivePolicy::kHybridHistogram;
  }
  return invalidArgument("unknown keep-alive policy '" + std::string(name) + "' (fixed | hybrid)");
}

const char* toString(KeepAlivePolicy p) {
  return p == KeepAlivePolicy::kFixed ? "fixed" : "hybrid";
}

void IdleTimeHistogram::record(Duration idle, const KeepAliveOptions& options) {
  if (idle < Duration::zero()) idle = Duration::zero();
  int64_t bin = idle / options.binWidth;
  if (bin >= options.bins) {
    ++outOfRange_;
    double ns = static_cast<double>(idle.count());
    outOfRangeEwmaNs_ = outOfRange_ == 1 ? ns : 0.7 * outOfRangeEwmaNs_ + 0.3 * ns;
    return;
  }
  if (bins_.empty()) bins_.assign(static_cast<size_t>(options.bins), 0);
  if (bins_[bin] == UINT16_MAX) {
    // Halve everything: keeps the shape, and makes old behaviour fade.
    inRange_ = 0;
    for (auto& b : bins_) {
      b /= 2;
      inRange_ += b;
    }
    outOfRange_ /= 2;
  }
  ++bins_[bin];
  ++inRange_;
}

KeepAliveWindow IdleTimeHistogram::window(const KeepAliveOptions& options) const {
  KeepAliveWindow standard{Duration::zero(), options.binWidth * options.bins, false};
  int64_t total = inRange_ + outOfRange_;
  if (total < options.minSamples) return standard;
  if (static_cast<double>(outOfRange_) > options.outOfRangeShare * static_cast<double>(total)) {
    auto predicted = Duration(static_cast<int64_t>(outOfRangeEwmaNs_));
    KeepAliveWindow w;
    w.prewarm = std::chrono::duration_cast<Duration>(predicted * 0.85);
    w.keepAlive = std::chrono::duration_cast<Duration>(predicted * 0.30);
    return w;
  }
  if (inRange_ == 0) return standard;
  // Coefficient of variation of the bin counts: a flat histogram says nothing about when the
  // next call comes.
  double mean = static_cast<double>(inRange_) / static_cast<double>(bins_.size());
  double var = 0;
  for (uint16_t b : bins_) var += (b - mean) * (b - mean);
  var /= static_cast<double>(bins_.size());
  double cv = mean > 0 ? std::sqrt(var) / mean : 0;
  if (cv <= options.cvThreshold) return standard;

  auto percentileBin = [&](double p) {
    auto target = static_cast<int64_t>(std::ceil(p * static_cast<double>(inRange_)));
    target = std::max<int64_t>(1, target);
    int64_t seen = 0;
    for (size_t i = 0; i < bins_.size(); ++i) {
      seen += bins_[i];
      if (seen >= target) return static_cast<int64_t>(i);
    }
    return static_cast<int64_t>(bins_.size()) - 1;
  };
  int64_t head = percentileBin(options.headPercentile);
  int64_t tail = percentileBin(options.tailPercentile);
  KeepAliveWindow w;
  w.fromHistogram = true;
  w.prewarm = std::chrono::duration_cast<Duration>(options.binWidth * head * (1 - options.margin));
  Duration tailEdge =
      std::chrono::duration_cast<Duration>(options.binWidth * (tail + 1) * (1 + options.margin));
  w.keepAlive = std::max(options.binWidth, tailEdge - w.prewarm);
  return w;
}

KeepAliveWindow keepAliveWindow(const KeepAliveOptions& options, const IdleTimeHistogram* h) {
  if (options.policy == KeepAlivePolicy::kFixed) {
    return KeepAliveWindow{Duration::zero(), options.fixed, false};
  }
  if (h == nullptr)
    return KeepAliveWindow{Duration::zero(), options.binWidth * options.bins, false};
  return h->window(options);
}

}  // namespace stratus
