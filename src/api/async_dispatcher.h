// Async invocation: the per-function async invoke config and the dispatcher that runs accepted
// tasks at least once.
//
// The API stores a task (MetadataStore::enqueueAsyncTask, committed and fsynced) before it
// answers 202, so an accepted task survives kill -9. The dispatcher claims due tasks (marking
// them Running and counting the attempt in the same transaction), invokes them through the
// guarded invoker and records the outcome:
//   success                          Succeeded (result kept), onSuccess destination enqueued
//   function or platform failure     Enqueued again after backoff(attempt) while attempts <=
//                                    maxAsyncRetryAttempts and the event is younger than
//                                    maxAsyncEventAgeInSeconds; else Failed (kept for
//                                    inspection), onFailure destination enqueued
//   refused (breaker, queue, quota)  Enqueued again after Retry-After; not counted as an attempt
//   shutdown (kAborted)              Enqueued again at once; not counted
// A restart requeues the tasks the dead process had Running (recover()), so every accepted task
// runs at least once; a task can run twice when the process dies after the function ran and
// before the outcome was stored.
//
// Backoff: exponential from baseBackoff, doubling per attempt up to maxBackoff, with "equal
// jitter": a uniform draw in [d/2, d], so retries of many tasks spread out and never come back
// sooner than half the nominal delay. Time is the injected wall Clock (now() = time since the
// Unix epoch, because due times are stored and must survive restarts); randomness is injected.
// Thread-safe. Callbacks of calls still running when the dispatcher stops are ignored (the tasks
// stay Running and are requeued by the next start).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/invoke.h"
#include "common/json.h"
#include "store/store.h"

namespace stratus {

// PUT /2023-03-30/functions/{name}/async-invoke-config (Function Compute's shape).
struct AsyncInvokeConfig {
  static constexpr int kMaxRetryAttempts = 8;
  static constexpr int64_t kMaxEventAgeSec = 86400;
  int maxAsyncRetryAttempts = 3;
  int64_t maxAsyncEventAgeInSeconds = kMaxEventAgeSec;
  std::string onSuccess;  // destination function name (same tenant); empty: none
  std::string onFailure;
};
// Validates ranges and destination names; a destination may be a function name or an ARN-like
// string ending in "functions/<name>".
Result<AsyncInvokeConfig> parseAsyncInvokeConfig(std::string_view body);
json::object asyncInvokeConfigToJson(const AsyncInvokeConfig& c);

// A wall clock: now() is the time since the Unix epoch (system_clock), for stored due times.
class WallClock final : public Clock {
 public:
  TimePoint now() const override;
};

struct AsyncOptions {
  int maxInFlight = 16;                         // tasks running at once
  Duration idlePoll = std::chrono::seconds(1);  // longest sleep when nothing is due
  Duration baseBackoff = std::chrono::seconds(1);
  Duration maxBackoff = std::chrono::minutes(5);
  Duration refusedRetry = std::chrono::seconds(1);  // when a refusal names no Retry-After
  size_t maxResultBytes = 64 << 10;                 // result kept per task
};

class AsyncDispatcher {
 public:
  using SpecLookup = std::function<Result<std::shared_ptr<const FunctionSpec>>(
      const std::string& tenant, const std::string& name)>;

  // uniform01 draws the jitter; default a seeded std::mt19937_64.
  AsyncDispatcher(MetadataStore& store, Invoker& invoker, const Clock& wallClock,
                  AsyncOptions options, SpecLookup lookup,
                  std::function<double()> uniform01 = nullptr);
  ~AsyncDispatcher();  // stop()

  // Requeues the tasks a previous process left Running. Call once before start()/runDue().
  Status recover();
  // Background thread: runs due tasks as they come due (woken early by notify()).
  void start();
  // Stops the thread; calls still running keep their tasks Running (requeued on restart).
  void stop();
  // New work was enqueued or a slot freed.
  void notify();
  // Claims the tasks due now (up to the free in-flight slots) and starts them; returns how many
  // were started. The thread calls it; tests call it directly with a ManualClock.
  int runDue();
  // Tasks started and not yet finished.
  int inFlight() const;
  // Waits until no task is in flight (tests). False on timeout.
  bool waitIdle(Duration timeout);
  // The delay before retry number `attempt` (1-based: after the first failed attempt).
  Duration backoff(int attempt);

 private:
  struct Shared;
  void loop();
  void start(AsyncTask task);

  MetadataStore& store_;
  Invoker& invoker_;
  const Clock& clock_;
  const AsyncOptions options_;
  SpecLookup lookup_;
  std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

}  // namespace stratus
