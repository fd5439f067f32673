#include "api/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace stratus {

RateLimiter::Decision RateLimiter::tryAcquire(const std::string& key, double rate, double burst) {
  if (rate <= 0) return {};
  if (burst <= 0) burst = std::max(1.0, rate);
  burst = std::max(1.0, burst);
  const TimePoint now = clock_.now();
  std::lock_guard lock(mu_);
  auto [it, inserted] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (inserted) {
    b.tokens = burst;  // a new tenant or function may burst at once
  } else {
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    if (elapsed > 0) b.tokens += elapsed * rate;
    b.tokens = std::min(b.tokens, burst);
  }
  b.last = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return {};
  }
  double wait = (1.0 - b.tokens) / rate;
  return {false, std::chrono::duration_cast<Duration>(std::chrono::duration<double>(wait))};
}

void RateLimiter::erase(const std::string& key) {
  std::lock_guard lock(mu_);
  buckets_.erase(key);
}

void RateLimiter::erasePrefix(const std::string& prefix) {
  std::lock_guard lock(mu_);
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (it->first.compare(0, prefix.size(), prefix) == 0) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t RateLimiter::size() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

}  // namespace stratus
