// RateLimiter: token buckets by key ("tenant" or "tenant/function"), the front door's answer to
// request floods (seed 1.1: the SLB absorbs attacks before they reach the scheduler).
//
// A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each request takes
// one. A refused request learns how long until a token is back (Retry-After). Buckets are created
// on first use and dropped with erase()/erasePrefix() when their tenant or function goes away, so
// memory follows the number of tenants and functions, not of requests.
// Time comes from the injected Clock. Thread-safe (one mutex; a take is a few arithmetic ops).
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace stratus {

class RateLimiter {
 public:
  struct Decision {
    bool allowed = true;
    Duration retryAfter{0};  // when refused: until one token is back
  };

  explicit RateLimiter(const Clock& clock) : clock_(clock) {}

  // Takes one token from `key`'s bucket. rate <= 0 means unlimited; burst <= 0 means
  // max(1, rate). A changed rate or burst applies at once (the bucket keeps its tokens, capped).
  Decision tryAcquire(const std::string& key, double rate, double burst);
  void erase(const std::string& key);
  // Drops every bucket whose key starts with prefix (a deleted tenant's functions).
  void erasePrefix(const std::string& prefix);
  size_t size() const;

 private:
  struct Bucket {
    double tokens = 0;
    TimePoint last{};
  };
  const Clock& clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // GUARDED_BY(mu_)
};

}  // namespace stratus
