#include "worker/worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/log.h"
#include "runtime/custom_http.h"
#include "runtime/protocol.h"
#include "runtime/runtime.h"
#include "sandbox/zygote.h"
#include "worker/event_loop.h"

namespace stratus {
namespace {

using runtime::FrameType;

constexpr size_t kLogRingBytes = 64 << 10;
constexpr size_t kLogTailBytes = 4 << 10;
// After the runtime closes its socket (or a custom runtime drops a connection), how long to wait
// for the pidfd to tell why before calling it a plain runtime exit.
constexpr Duration kExitGrace = std::chrono::milliseconds(500);
// Custom runtimes: how often to retry connecting to the port while the server starts.
constexpr Duration kConnectRetry = std::chrono::milliseconds(3);
// pids a sandbox gets beyond one per call in flight (the runtime's own threads, subprocesses).
constexpr int64_t kPidsMargin = 64;
constexpr size_t kMaxNodeTemplates = 4;

int64_t micros(Duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

int64_t unixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string errorBody(std::string_view type, std::string_view message,
                      const json::value* stackTrace = nullptr) {
  json::object o;
  o["errorType"] = type;
  o["errorMessage"] = message;
  if (stackTrace != nullptr && !stackTrace->is_null()) o["stackTrace"] = *stackTrace;
  return json::serialize(o);
}

// Error body from a runtime's kError / kInitError meta.
std::string errorBodyFromMeta(const json::object& meta, std::string_view defaultType) {
  std::string type(defaultType), message;
  if (auto* v = meta.if_contains("errorType"); v && v->is_string()) type = v->as_string();
  if (auto* v = meta.if_contains("errorMessage"); v && v->is_string()) message = v->as_string();
  return errorBody(type, message, meta.if_contains("stackTrace"));
}

std::string metaString(const json::object& meta, std::string_view key) {
  if (auto* v = meta.if_contains(key); v && v->is_string()) return std::string(v->as_string());
  return {};
}

bool validInstanceId(const std::string& id) {
  if (id.empty() || id.size() > 48) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// A path component made from a tenant or function name: never "/", "." or "..".
std::string safeComponent(std::string s) {
  if (s.empty()) s = "default";
  for (char& c : s) {
    if (c == '/' || c == '\0') c = '_';
  }
  if (s == "." || s == "..") s = "_" + s;
  return s;
}

// Servers commonly write the response head and body in two writes (Python's http.server does);
// with Nagle on their side and delayed ACKs on ours every call would stall ~40 ms. NODELAY for our
// requests, QUICKACK (which the kernel turns off again by itself) after every read.
void tuneTcp(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

void quickAck(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

// How a process that is not our child ended, through its pidfd: PIDFD_GET_INFO with
// PIDFD_INFO_EXIT (Linux 6.15+). A templated runtime's parent is the sandbox's init, which reaps
// it; the status is only there once it has been reaped, and in practice the worker's wake-up comes
// first, so this is best effort (a crash is then reported without its exit code).
std::optional<ExitInfo> exitFromPidFd(int pidfd) {
  struct PidfdInfo {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exitCode;
  };
  static_assert(sizeof(PidfdInfo) == 64, "PIDFD_INFO_SIZE_VER0");
  constexpr uint64_t kInfoExit = 1ULL << 3;
  constexpr unsigned long kGetInfo = 0xC040FF0BUL;  // _IOWR(0xFF, 11, struct pidfd_info)
  PidfdInfo info{};
  info.mask = kInfoExit;
  if (::ioctl(pidfd, kGetInfo, &info) != 0 || (info.mask & kInfoExit) == 0) return std::nullopt;
  ExitInfo e;
  const int st = info.exitCode;
  if (WIFSIGNALED(st)) {
    e.signal = WTERMSIG(st);
    e.exitCode = 128 + e.signal;
  } else {
    e.exitCode = WEXITSTATUS(st);
  }
  return e;
}

std::string describeExit(const ExitInfo& info) {
  if (info.signal != 0) {
    const char* name = sigabbrev_np(info.signal);
    return "Runtime was killed by signal " + std::to_string(info.signal) +
           (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "Runtime exited with code " + std::to_string(info.exitCode);
}

// Runs tasks in order on one long-lived thread: sandboxes are created (PR_SET_PDEATHSIG is tied
// to the creating thread) and destroyed (which may wait for a cgroup to empty) here, never on the
// I/O thread.
class TaskThread {
 public:
  TaskThread() : thread_([this] { run(); }) {}
  ~TaskThread() { stopAndJoin(); }
  // urgent: runs before every non-urgent task queued (a request-path sandbox creation must not
  // wait behind pool refills); FIFO among urgent tasks.
  void push(std::function<void()> fn, bool urgent = false) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        (urgent ? urgent_ : tasks_).push_back(std::move(fn));
        fn = nullptr;
      }
    }
    if (fn) {
      fn();  // already stopped: run inline so cleanup is never skipped
      return;
    }
    cv_.notify_one();
  }
  // Runs everything queued so far, then exits.
  void stopAndJoin() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  // Returns once every task pushed before this call has run.
  void barrier() {
    std::promise<void> p;
    auto f = p.get_future();
    push([&p] { p.set_value(); });
    f.wait();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !tasks_.empty() || !urgent_.empty(); });
        auto& q = urgent_.empty() ? tasks_ : urgent_;
        if (q.empty()) return;
        fn = std::move(q.front());
        q.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;   // GUARDED_BY(mu_)
  std::deque<std::function<void()>> urgent_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                     // GUARDED_BY(mu_)
  std::thread thread_;
};

// One function's log file, shared by its instances. Appends are single write() calls on an
// O_APPEND fd, so concurrent instances never overwrite each other.
struct LogSink {
  UniqueFd fd;
  bool warned = false;
};

struct Call {
  std::string requestId;
  InvokeCallback done;
  TimePoint start;
  uint64_t logStart = 0;
  bool wantLogTail = false;
  int64_t cpuStartNs = 0;  // the sandbox's CPU time when the call started (accounting)
  EventLoop::TimerId timer = 0;
  EventLoop::TimerId graceTimer = 0;
  // Custom runtime: the request, kept to resend once when a reused keep-alive connection turns
  // out to have been closed by the server.
  std::string httpRequest;
  bool resent = false;
};

// One HTTP connection to a custom runtime's server.
struct HttpConn {
  enum class Use { kProbe, kInit, kIdle, kCall };
  UniqueFd fd;
  bool connected = false;
  bool reused = false;  // carried an earlier call: the server may have closed it meanwhile
  Use use = Use::kProbe;
  std::string requestId;  // kCall
  std::string out;
  size_t outOff = 0;
  runtime::HttpResponseParser parser;
};

enum class State { kCreating, kStarting, kReady, kDead };

struct Instance {
  std::string id;
  FunctionSpec fn;
  bool custom = false;
  // Warm pool: a blank sandbox (no function yet) waiting in pool slot poolKey; fromPool once a
  // start took it. poolBytes: what it counts against the pool's memory budget.
  bool blank = false;
  bool fromPool = false;
  // Forked from the template: the sandbox's own command is a placeholder; this pidfd watches the
  // runtime. loadOnHello: a (non-blank) start whose code is attached when the runtime says hello.
  bool templated = false;
  bool loadOnHello = false;
  std::filesystem::path codeDir;
  UniqueFd runtimePidFd;
  int exitInfoTries = 0;  // onRuntimeGone waiting for init to reap the templated runtime
  std::string poolKey;
  int64_t poolBytes = 0;
  std::filesystem::path dir;  // <stateDir>/<id>
  State state = State::kCreating;
  std::atomic<bool> cancelled{false};  // read by the spawner: skip creating it
  std::function<void(Result<InstanceReady>)> startDone;
  TimePoint createStart;
  TimePoint createdAt;  // backend.create() returned
  TimePoint helloAt;
  int64_t unreportedInitUs = 0;  // the cold start, reported in the first call's REPORT line
  EventLoop::TimerId startTimer = 0;
  EventLoop::TimerId connectTimer = 0;
  EventLoop::TimerId eofTimer = 0;

  std::unique_ptr<Sandbox> sandbox;
  bool pidFdWatched = false;
  UniqueFd listenFd;
  UniqueFd conn;
  UniqueFd outPipe;
  UniqueFd errPipe;

  // Frame protocol.
  bool gotHello = false;
  runtime::FrameDecoder decoder;
  std::string out;
  size_t outOff = 0;
  bool writeArmed = false;

  // Custom runtime.
  std::vector<std::unique_ptr<HttpConn>> http;

  std::map<std::string, Call> calls;

  // Logs.
  std::shared_ptr<LogSink> log;
  // Grows to kLogRingBytes only if the instance writes that much (most idle instances write
  // nothing: thousands of them must stay cheap); while growing, ring.size() == logTotal.
  std::string ring;
  uint64_t logTotal = 0;  // bytes ever written by this instance
};

// What the spawner hands back to the loop (shared_ptr: std::function needs copyable captures).
struct Created {
  Status status;
  std::unique_ptr<Sandbox> sandbox;
  UniqueFd listenFd, outPipe, errPipe;
  std::shared_ptr<LogSink> log;
  TimePoint createStart;
  TimePoint createdAt;
  UniqueFd runtimePidFd;  // templated
  bool templated = false;
  bool templateUnusable = false;  // failed because the runtime's template cannot work here
};

}  // namespace

class Worker::Impl {
 public:
  Impl(WorkerOptions options, SandboxBackend& backend, const Clock& clock)
      : options_(std::move(options)), backend_(backend), clock_(clock) {
    auto loop = EventLoop::create(clock_);
    if (!loop.isOk()) {
      initStatus_ = loop.status();
      return;
    }
    loop_ = std::move(loop).value();
    loop_->start();
    spawner_ = std::make_unique<TaskThread>();
    accepting_ = true;
    if (options_.pool.enabled) {
      loop_->post([this] {
        for (const auto& k : options_.pool.prewarm) {
          if (runtime::kindOf(k.runtime) != runtime::Kind::kFrameProtocol) continue;
          PoolSlot& slot = pool_[poolKeyOf(k.tenant, k.runtime, k.memoryMb)];
          slot.tenant = k.tenant;
          slot.runtime = k.runtime;
          slot.memoryMb = k.memoryMb;
          slot.minSize = options_.pool.minPerKey;
        }
        poolTick();
      });
    }
  }

  ~Impl() { shutdown(); }

  void startInstance(const std::string& id, const FunctionSpec& fn,
                     const std::filesystem::path& codeDir,
                     std::function<void(Result<InstanceReady>)> done) {
    if (!accepting_) {
      done(initStatus_.isOk() ? Status(Code::kAborted, "worker is shut down") : initStatus_);
      return;
    }
    if (!validInstanceId(id)) {
      done(invalidArgument("instance id '" + id + "' must be 1-48 characters of [a-z0-9-]"));
      return;
    }
    loop_->post([this, id, fn, codeDir, done = std::move(done)]() mutable {
      startOnLoop(id, fn, codeDir, std::move(done));
    });
  }

  void invoke(const std::string& id, InvokeRequest req, InvokeCallback done) {
    if (!accepting_) {
      InvokeResult r;
      r.status = Status(Code::kAborted, "worker is shut down");
      r.instanceId = id;
      done(std::move(r));
      return;
    }
    loop_->post([this, id, req = std::move(req), done = std::move(done)]() mutable {
      invokeOnLoop(id, std::move(req), std::move(done));
    });
  }

  void stopInstance(const std::string& id) {
    if (!accepting_) return;
    loop_->post([this, id] {
      auto it = instances_.find(id);
      if (it == instances_.end()) return;
      InstancePtr inst = it->second;  // a copy: teardown erases the map entry
      abortInstance(inst, "instance " + id + " was stopped");
    });
  }

  void setLostHandler(std::function<void(const std::string&, Status)> h) {
    std::lock_guard<std::mutex> lock(lostMu_);
    lostHandler_ = std::move(h);
  }

  size_t instanceCount() const { return count_.load(); }

  void shutdown() {
    std::lock_guard<std::mutex> lock(shutdownMu_);
    if (shutDown_) return;
    shutDown_ = true;
    accepting_ = false;
    if (!loop_) return;
    assert(!loop_->inLoopThread() && "Worker::shutdown() called from a worker callback");
    // 1. Abort every instance (starting ones get done(kAborted)); their sandboxes go to the
    //    spawner for destruction.
    runOnLoopAndWait([this] {
      shuttingDown_ = true;
      std::vector<std::shared_ptr<Instance>> all;
      for (auto& [id, inst] : instances_) all.push_back(inst);
      for (auto& [id, inst] : blanks_) all.push_back(inst);
      if (poolTimer_ != 0) loop_->cancelTimer(poolTimer_);
      poolTimer_ = 0;
      for (auto& inst : all) abortInstance(inst, "worker is shutting down");
    });
    // 2. Creations already queued or running finish (cancelled ones are skipped) and post their
    //    outcome to the loop, which 3. hands any sandbox made meanwhile back for destruction.
    spawner_->barrier();
    runOnLoopAndWait([] {});
    // 4. Destroy everything, then stop the threads.
    spawner_->stopAndJoin();
    pyZygote_.reset();
    nodeZygotes_.clear();
    loop_->stop();
    std::lock_guard<std::mutex> logLock(logMu_);
    logSinks_.clear();
  }

 private:
  using InstancePtr = std::shared_ptr<Instance>;

  void runOnLoopAndWait(std::function<void()> fn) {
    std::promise<void> p;
    auto f = p.get_future();
    loop_->post([&] {
      fn();
      p.set_value();
    });
    f.wait();
  }

  // ---------------------------------------------------------------------------------------------
  // Start.

  void startOnLoop(const std::string& id, const FunctionSpec& fn,
                   const std::filesystem::path& codeDir,
                   std::function<void(Result<InstanceReady>)> done) {
    if (shuttingDown_) {
      done(Status(Code::kAborted, "worker is shutting down"));
      return;
    }
    if (instances_.count(id) != 0) {
      done(alreadyExists("instance " + id + " already exists"));
      return;
    }
    if (options_.pool.enabled) {
      if (!poolable(fn)) {
        ++stats_.bypassed;
      } else {
        const std::string key = poolKeyOf(fn.tenant, fn.runtime, fn.memoryMb);
        PoolSlot& slot = pool_[key];
        slot.tenant = fn.tenant;
        slot.runtime = fn.runtime;
        slot.memoryMb = fn.memoryMb;
        slot.demand.push_back(clock_.now());
        InstancePtr blank;
        while (!slot.warm.empty() && !blank) {
          blank = slot.warm.front();
          slot.warm.pop_front();
          if (blank->state != State::kStarting) blank = nullptr;  // (defensive) died meanwhile
        }
        if (blank) {
          ++stats_.hits;
          takeFromPool(blank, id, fn, codeDir, std::move(done));
          refill(key);
          publishPoolStats();
          return;
        }
        ++stats_.misses;
        refill(key);
      }
      publishPoolStats();
    }
    auto inst = std::make_shared<Instance>();
    inst->id = id;
    inst->fn = fn;
    inst->custom = runtime::kindOf(fn.runtime) == runtime::Kind::kCustomHttp;
    inst->dir = options_.stateDir / id;
    inst->startDone = std::move(done);
    instances_[id] = inst;
    count_ = instances_.size();
    spawner_->push([this, inst, codeDir] { createOnSpawner(inst, codeDir); }, /*urgent=*/true);
  }

  // ---------------------------------------------------------------------------------------------
  // Warm pool (loop thread).

  struct PoolSlot {
    std::string tenant;
    std::string runtime;
    int memoryMb = 128;
    int minSize = 0;               // prewarmed keys keep this many even without demand
    std::deque<InstancePtr> warm;  // said hello, waiting for a function
    int creating = 0;              // launched, no hello yet
    std::deque<TimePoint> demand;  // poolable starts within the demand window
    int failures = 0;              // consecutive blanks that died before their hello
    TimePoint backoffUntil{};
  };

  static std::string poolKeyOf(const std::string& tenant, const std::string& runtime,
                               int memoryMb) {
    return tenant + "/" + runtime + "/" + std::to_string(memoryMb);
  }

  bool poolable(const FunctionSpec& fn) const {
    if (runtime::kindOf(fn.runtime) != runtime::Kind::kFrameProtocol) return false;
    if (fn.runtime != "python3" && fn.runtime != "nodejs") return false;
    if (int64_t{fn.instanceConcurrency} + kPidsMargin > options_.pidsMax) return false;
    for (const auto& [k, v] : fn.environmentVariables) {
      // Read by the interpreter or libc at process start: a pooled runtime started without them.
      if ((k.starts_with("PYTHON") && k != "PYTHONPATH") || k.starts_with("NODE_") ||
          k.starts_with("LD_") || k.starts_with("LC_") || k == "LANG" || k == "TZ" ||
          k.starts_with("UV_") || k.starts_with("MALLOC_") || k.starts_with("GLIBC_") ||
          k.starts_with("OPENSSL_")) {
        return false;
      }
    }
    return true;
  }

  // What a blank sandbox of a key is started as: the runtime with no function.
  static FunctionSpec blankFunction(const PoolSlot& slot) {
    FunctionSpec fn;
    fn.tenant = slot.tenant;
    fn.runtime = slot.runtime;
    fn.memoryMb = slot.memoryMb;
    return fn;
  }

  // Until a blank has said hello its memory is unknown; count this much.
  static int64_t estimatedBlankBytes(const std::string& runtime) {
    return runtime == "nodejs" ? (48LL << 20) : (12LL << 20);
  }

  size_t targetSize(PoolSlot& slot) {
    const TimePoint horizon = clock_.now() - options_.pool.demandWindow;
    while (!slot.demand.empty() && slot.demand.front() < horizon) slot.demand.pop_front();
    const size_t want = std::max<size_t>(slot.demand.size(), static_cast<size_t>(slot.minSize));
    return std::min<size_t>(want, static_cast<size_t>(std::max(0, options_.pool.maxPerKey)));
  }

  // Launches blank sandboxes up to the slot's target (within the budget and the creation cap) and
  // destroys warm ones beyond it.
  void refill(const std::string& key) {
    if (shuttingDown_ || !options_.pool.enabled) return;
    auto it = pool_.find(key);
    if (it == pool_.end()) return;
    PoolSlot& slot = it->second;
    const size_t target = targetSize(slot);
    while (slot.warm.size() > target) {
      InstancePtr extra = slot.warm.front();  // the oldest
      slot.warm.pop_front();
      abortInstance(extra, "pool shrinks");
    }
    const int64_t estimate = estimatedBlankBytes(slot.runtime);
    while (slot.warm.size() + static_cast<size_t>(slot.creating) < target &&
           poolCreating_ < options_.pool.maxCreating &&
           stats_.bytes + estimate <= options_.pool.memoryBudgetBytes &&
           clock_.now() >= slot.backoffUntil) {
      launchBlank(key, slot, estimate);
    }
  }

  void launchBlank(const std::string& key, PoolSlot& slot, int64_t estimate) {
    auto inst = std::make_shared<Instance>();
    inst->id = "w-" + randomHex(6);
    inst->blank = true;
    inst->poolKey = key;
    inst->poolBytes = estimate;
    inst->fn = blankFunction(slot);
    inst->dir = options_.stateDir / inst->id;
    slot.creating++;
    poolCreating_++;
    stats_.bytes += estimate;
    blanks_[inst->id] = inst;
    publishPoolStats();
    spawner_->push([this, inst] { createOnSpawner(inst, {}); });
  }

  // A blank said hello: it is warm.
  void blankReady(const InstancePtr& inst) {
    auto it = pool_.find(inst->poolKey);
    if (it == pool_.end()) return abortInstance(inst, "pool slot gone");
    PoolSlot& slot = it->second;
    slot.creating--;
    poolCreating_--;
    slot.failures = 0;
    const int64_t measured = inst->sandbox->usage().memoryCurrentBytes;
    if (measured > 0) {
      stats_.bytes += measured - inst->poolBytes;
      inst->poolBytes = measured;
    }
    slot.warm.push_back(inst);
    publishPoolStats();
    SLOG_DEBUG("pool {}: blank {} warm in {} us ({} KB)", inst->poolKey, inst->id,
               micros(clock_.now() - inst->createStart), inst->poolBytes >> 10);
    refillAll();
  }

  // A blank is being torn down (died, shrunk, shutdown) or was taken by a start.
  void leavePool(Instance& inst, bool taken) {
    if (!inst.blank) return;
    inst.blank = false;
    blanks_.erase(inst.id);
    stats_.bytes -= inst.poolBytes;
    auto it = pool_.find(inst.poolKey);
    if (it != pool_.end()) {
      PoolSlot& slot = it->second;
      if (!inst.gotHello) {
        slot.creating--;
        poolCreating_--;
        if (!taken) {
          // Died before its hello: back off so that a broken runtime does not spin the spawner.
          slot.failures = std::min(slot.failures + 1, 6);
          slot.backoffUntil = clock_.now() + std::chrono::milliseconds(250 << slot.failures);
        }
      } else {
        auto w = std::find_if(slot.warm.begin(), slot.warm.end(),
                              [&](const InstancePtr& p) { return p.get() == &inst; });
        if (w != slot.warm.end()) slot.warm.erase(w);
      }
    }
    publishPoolStats();
  }

  void refillAll() {
    for (auto& [key, slot] : pool_) refill(key);
  }

  // Once a second: demand ages out of the window, slots shrink or refill.
  void poolTick() {
    if (shuttingDown_) return;
    refillAll();
    for (auto it = pool_.begin(); it != pool_.end();) {  // forget idle keys nobody asks for
      PoolSlot& slot = it->second;
      if (slot.minSize == 0 && slot.demand.empty() && slot.warm.empty() && slot.creating == 0) {
        it = pool_.erase(it);
      } else {
        ++it;
      }
    }
    poolTimer_ = loop_->addTimerAfter(std::chrono::seconds(1), [this] { poolTick(); });
  }

  void takeFromPool(const InstancePtr& inst, const std::string& id, const FunctionSpec& fn,
                    const std::filesystem::path& codeDir,
                    std::function<void(Result<InstanceReady>)> done) {
    leavePool(*inst, /*taken=*/true);
    inst->id = id;
    inst->fn = fn;
    inst->fromPool = true;
    inst->startDone = std::move(done);
    inst->createStart = clock_.now();
    instances_[id] = inst;
    count_ = instances_.size();
    auto log = logSinkFor(fn);
    if (!log.isOk()) return failStart(inst, log.status());
    inst->log = std::move(log).value();
    if (!codeDir.empty()) {
      Status st = inst->sandbox->attachCode(codeDir);
      if (!st.isOk()) return failStart(inst, st.withContext("start instance " + id));
    }
    inst->createdAt = clock_.now();
    sendLoad(inst);
  }

  void publishPoolStats() {
    std::lock_guard<std::mutex> lock(statsMu_);
    size_t warm = 0;
    for (const auto& [key, slot] : pool_) warm += slot.warm.size();
    stats_.warm = warm;
    stats_.creating = static_cast<size_t>(std::max(0, poolCreating_));
    publishedStats_ = stats_;
  }

 public:
  WarmPoolStats poolStats() const {
    std::lock_guard<std::mutex> lock(statsMu_);
    WarmPoolStats s = publishedStats_;
    return s;
  }
  // Every instance's command (and a template's child) runs as SandboxSpec's default uid/gid.
  Result<HostIds> codeOwner(const FunctionSpec& fn) {
    const SandboxSpec defaults;
    return backend_.hostIds(fn.tenant, defaults.uid, defaults.gid);
  }

 private:
  // Spawner thread. Touches only inst's immutable fields and `cancelled`.
  void createOnSpawner(const InstancePtr& inst, const std::filesystem::path& codeDir) {
    if (inst->cancelled) return;
    inst->codeDir = codeDir;  // read on the loop only after onCreated (posted below)
    auto created = std::make_shared<Created>();
    created->status = prepareAndCreate(*inst, codeDir, *created);
    if (!created->status.isOk() && created->templateUnusable) {
      // The runtime's template cannot work on this host (templatesOff_ now says so): this
      // instance, and every later one of the runtime, starts exec'd instead.
      created->sandbox.reset();
      (void)removeTree(inst->dir);
      created = std::make_shared<Created>();
      created->status = prepareAndCreate(*inst, codeDir, *created);
    }
    if (!created->status.isOk()) {
      created->sandbox.reset();
      (void)removeTree(inst->dir);
    }
    loop_->post([this, inst, created] { onCreated(inst, *created); });
  }

  Status prepareAndCreate(const Instance& inst, const std::filesystem::path& codeDir,
                          Created& out) {
    const FunctionSpec& fn = inst.fn;
    RETURN_IF_ERROR(makeDirs(inst.dir, 0755));
    if (!inst.custom) {
      UniqueFd ls(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!ls) return Status::fromErrno(errno, "socket for instance " + inst.id);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      const std::string path = (inst.dir / "rt.sock").string();
      if (path.size() >= sizeof addr.sun_path) {
        return invalidArgument("runtime socket path too long: " + path);
      }
      std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      if (::bind(ls.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return Status::fromErrno(errno, "bind " + path);
      }
      // The runtime runs as nobody (65534) and must be able to connect.
      if (::chmod(path.c_str(), 0666) != 0) return Status::fromErrno(errno, "chmod " + path);
      if (::listen(ls.get(), 4) != 0) return Status::fromErrno(errno, "listen " + path);
      out.listenFd = std::move(ls);
    }
    int outP[2], errP[2];
    if (::pipe2(outP, O_CLOEXEC) != 0) return Status::fromErrno(errno, "pipe for stdout");
    UniqueFd outR(outP[0]), outW(outP[1]);
    if (::pipe2(errP, O_CLOEXEC) != 0) return Status::fromErrno(errno, "pipe for stderr");
    UniqueFd errR(errP[0]), errW(errP[1]);
    ::fcntl(outR.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(errR.get(), F_SETFL, O_NONBLOCK);

    if (!inst.blank) {
      ASSIGN_OR_RETURN(out.log, logSinkFor(fn));
    }

    SandboxSpec spec;
    spec.id = inst.id;
    spec.argv = runtime::commandFor(fn);
    spec.env = runtime::environmentFor(fn);
    spec.codeDir = codeDir;
    spec.mounts.push_back(
        BindMount{options_.runtimeAssetsDir, std::string(runtime::kAssetsMountPoint), true});
    if (!inst.custom) {
      spec.mounts.push_back(BindMount{inst.dir, std::string(runtime::kSocketMountPoint), false});
    }
    spec.memoryBytes = int64_t{fn.memoryMb} << 20;
    spec.tmpfsBytes = options_.tmpfsBytes;
    // Python runs a thread per call in flight: a legal instanceConcurrency must never hit the
    // pids limit of its own sandbox.
    spec.pidsMax =
        std::max<int64_t>(options_.pidsMax, int64_t{fn.instanceConcurrency} + kPidsMargin);
    // 1024 shares per GB of memory, like Lambda's CPU-proportional-to-memory model.
    spec.cpuShares = std::max<int64_t>(128, fn.memoryMb);
    // With user namespaces, the tenant's own host uid range (pool blanks belong to a tenant too).
    spec.tenant = fn.tenant;
    spec.stdoutFd = outW.get();
    spec.stderrFd = errW.get();
    const bool templated = options_.templates &&
                           (fn.runtime == "python3" || fn.runtime == "nodejs") &&
                           !templatesOff_.count(fn.runtime) && (inst.blank || poolable(fn));
    std::vector<std::string> runtimeEnv;
    std::vector<std::string> templateFlags;  // nodejs: the interpreter flags of commandFor()
    if (templated) {
      // The template's child starts blank (its function arrives over the socket, as in a pool
      // hit); the sandbox's own command only holds it open.
      FunctionSpec blankFn;
      blankFn.tenant = fn.tenant;
      blankFn.runtime = fn.runtime;
      blankFn.memoryMb = fn.memoryMb;
      runtimeEnv = runtime::environmentFor(blankFn);
      if (fn.runtime == "nodejs") {
        // node's heap limit follows the function's memory and is fixed at node's start: the
        // flags between the interpreter and the bootstrap select the template.
        const auto argv = runtime::commandFor(blankFn);
        templateFlags.assign(argv.begin() + 1, argv.end() - 1);
      }
      spec.argv = {"/usr/bin/sleep", "infinity"};
      spec.env = {"PATH=/usr/bin:/bin"};
      spec.codeDir.clear();
      spec.stdoutFd = -1;
      spec.stderrFd = -1;
    }
    out.createStart = clock_.now();
    auto sb = backend_.create(spec);
    if (!sb.isOk()) return sb.status().withContext("create sandbox for instance " + inst.id);
    out.sandbox = std::move(sb).value();
    if (templated) {
      std::unique_ptr<Zygote>* zygote = &pyZygote_;
      if (fn.runtime == "nodejs") {
        std::string key;
        for (const auto& f : templateFlags) key += f + " ";
        zygote = &nodeZygotes_[key];
        // Every distinct heap size holds a node template (~40 MB): keep the last few used.
        nodeZygoteUse_.remove(key);
        nodeZygoteUse_.push_back(key);
        while (nodeZygoteUse_.size() > kMaxNodeTemplates) {
          nodeZygotes_.erase(nodeZygoteUse_.front());
          nodeZygoteUse_.pop_front();
        }
      }
      if (!*zygote) {
        auto z = fn.runtime == "nodejs"
                     ? Zygote::startNode(options_.runtimeAssetsDir / "nodejs" / "zygote.js",
                                         templateFlags)
                     : Zygote::startPython(options_.runtimeAssetsDir / "python3" / "zygote.py");
        if (!z.isOk()) return templateUnusable(fn.runtime, z.status(), inst, out);
        *zygote = std::move(z).value();
      }
      auto pid = (*zygote)->spawnInto(out.sandbox->pid(), outW.get(), errW.get(), runtimeEnv);
      if (!pid.isOk()) {
        // A template that died before it ever forked a runtime here will not start to (e.g. the
        // nodejs template refuses a node build without the symbols it needs): exec from now on.
        // (Other errors -- a sandbox stopped mid-start, a fork refused inside it -- leave the
        // template alive and say nothing about it.)
        const Status& st = pid.status();
        const bool templateGone = st.code() == Code::kUnavailable ||
                                  st.code() == Code::kDeadlineExceeded || st.sysErrno() == EPIPE ||
                                  st.sysErrno() == ECONNRESET;
        if (templateGone && !templatesServed_.count(fn.runtime)) {
          zygote->reset();
          return templateUnusable(fn.runtime, pid.status(), inst, out);
        }
        if (pid.status().code() == Code::kUnavailable) zygote->reset();  // restart next time
        return pid.status().withContext("instance " + inst.id);
      }
      templatesServed_.insert(fn.runtime);
      int pfd = static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0));
      if (pfd < 0) return Status::fromErrno(errno, "pidfd_open for the runtime of " + inst.id);
      out.runtimePidFd.reset(pfd);
      out.templated = true;
    }
    out.createdAt = clock_.now();
    out.outPipe = std::move(outR);
    out.errPipe = std::move(errR);
    return Status::ok();
  }

  Status templateUnusable(const std::string& runtime, const Status& cause, const Instance& inst,
                          Created& out) {
    templatesOff_.insert(runtime);
    out.templateUnusable = true;
    SLOG_WARN("worker: {} templates are off on this host, instances start exec'd: {}", runtime,
              cause.toString());
    return cause.withContext("instance " + inst.id);
  }

  Result<std::shared_ptr<LogSink>> logSinkFor(const FunctionSpec& fn) {
    const std::string tenant = safeComponent(fn.tenant);
    const std::string name = safeComponent(fn.name);
    const std::string key = tenant + "/" + name;
    std::lock_guard<std::mutex> lock(logMu_);
    auto it = logSinks_.find(key);
    if (it != logSinks_.end()) {
      if (auto sink = it->second.lock()) return sink;
    }
    const auto dir = options_.logDir / tenant;
    RETURN_IF_ERROR(makeDirs(dir, 0755));
    const auto path = dir / (name + ".log");
    auto sink = std::make_shared<LogSink>();
    sink->fd.reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    if (!sink->fd) return Status::fromErrno(errno, "open log " + path.string());
    logSinks_[key] = sink;
    return sink;
  }

  void onCreated(const InstancePtr& inst, Created& c) {
    if (inst->state == State::kDead) {  // stopped while being created
      destroyLater(std::move(c.sandbox), inst->dir);
      return;
    }
    if (!c.status.isOk()) {
      auto done = std::move(inst->startDone);
      inst->state = State::kDead;
      if (inst->blank) {
        SLOG_WARN("pool {}: {}", inst->poolKey, c.status.toString());
        leavePool(*inst, /*taken=*/false);
        return;
      }
      instances_.erase(inst->id);
      count_ = instances_.size();
      done(c.status);
      return;
    }
    inst->sandbox = std::move(c.sandbox);
    inst->listenFd = std::move(c.listenFd);
    inst->outPipe = std::move(c.outPipe);
    inst->errPipe = std::move(c.errPipe);
    inst->log = std::move(c.log);
    inst->createStart = c.createStart;
    inst->createdAt = c.createdAt;
    inst->state = State::kStarting;
    std::weak_ptr<Instance> weak = inst;
    if (c.templated) {
      inst->templated = true;
      inst->loadOnHello = !inst->blank;
      inst->runtimePidFd = std::move(c.runtimePidFd);
      Status ws = loop_->add(inst->runtimePidFd.get(), EPOLLIN, [this, weak](uint32_t) {
        if (auto i = weak.lock()) onRuntimeGone(i);
      });
      if (!ws.isOk()) return failStart(inst, ws);
    }

    Status st = loop_->add(inst->sandbox->pidFd(), EPOLLIN, [this, weak](uint32_t) {
      if (auto i = weak.lock()) onProcessExit(i);
    });
    if (!st.isOk()) return failStart(inst, st);
    inst->pidFdWatched = true;
    for (UniqueFd* p : {&inst->outPipe, &inst->errPipe}) {
      const int fd = p->get();
      st = loop_->add(fd, EPOLLIN, [this, weak, p](uint32_t) {
        if (auto i = weak.lock()) readPipe(*i, *p);
      });
      if (!st.isOk()) return failStart(inst, st);
    }

    const Duration initBudget =
        std::chrono::seconds(inst->fn.initializationTimeoutSec) + options_.startBudget;
    if (inst->custom) {
      inst->startTimer = loop_->addTimerAfter(initBudget, [this, weak] {
        if (auto i = weak.lock()) onStartTimeout(i);
      });
      connectProbe(inst);
      return;
    }
    st = loop_->add(inst->listenFd.get(), EPOLLIN, [this, weak](uint32_t) {
      if (auto i = weak.lock()) onAccept(i);
    });
    if (!st.isOk()) return failStart(inst, st);
    inst->startTimer = loop_->addTimer(inst->createStart + options_.startBudget, [this, weak] {
      if (auto i = weak.lock()) onStartTimeout(i);
    });
  }

  void onStartTimeout(const InstancePtr& inst) {
    inst->startTimer = 0;
    if (inst->state != State::kStarting) return;
    std::string msg;
    if (!inst->custom && !inst->gotHello) {
      msg =
          "Runtime did not start within " + std::to_string(toMillis(options_.startBudget)) + " ms";
    } else {
      msg = "Initialization did not finish within " +
            std::to_string(inst->fn.initializationTimeoutSec) + " seconds";
    }
    failStart(inst, Status(Code::kFailedPrecondition, errorBody("Runtime.InitTimeout", msg)));
  }

  void failStart(const InstancePtr& inst, Status st) {
    auto done = std::move(inst->startDone);
    teardown(inst);
    if (done) done(std::move(st));
  }

  void markReady(const InstancePtr& inst) {
    if (inst->startTimer != 0) loop_->cancelTimer(inst->startTimer);
    inst->startTimer = 0;
    inst->state = State::kReady;
    InstanceReady ready;
    const TimePoint now = clock_.now();
    ready.initDurationUs = micros(now - inst->createStart);
    inst->unreportedInitUs = ready.initDurationUs;
    ready.fromPool = inst->fromPool;
    if (inst->fromPool) {
      SLOG_DEBUG("instance {} ready in {} us from the pool: code attach {} us, load {} us",
                 inst->id, ready.initDurationUs, micros(inst->createdAt - inst->createStart),
                 micros(now - inst->createdAt));
    } else
      SLOG_DEBUG("instance {} ready in {} us: sandbox {} us, runtime hello {} us, load {} us",
                 inst->id, ready.initDurationUs, micros(inst->createdAt - inst->createStart),
                 inst->custom ? 0 : micros(inst->helloAt - inst->createdAt),
                 micros(now - (inst->custom ? inst->createdAt : inst->helloAt)));
    auto done = std::move(inst->startDone);
    if (done) done(ready);
  }

  // ---------------------------------------------------------------------------------------------
  // Frame protocol connection.

  void onAccept(const InstancePtr& inst) {
    UniqueFd c(::accept4(inst->listenFd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      return failStart(inst, Status::fromErrno(errno, "accept runtime connection of " + inst->id));
    }
    // One runtime, one connection: nobody else may connect later.
    loop_->remove(inst->listenFd.get());
    inst->listenFd.reset();
    inst->conn = std::move(c);
    std::weak_ptr<Instance> weak = inst;
    Status st = loop_->add(inst->conn.get(), EPOLLIN | EPOLLRDHUP, [this, weak](uint32_t ev) {
      if (auto i = weak.lock()) onConnEvent(i, ev);
    });
    if (!st.isOk()) failStart(inst, st);
  }

  void onConnEvent(const InstancePtr& inst, uint32_t ev) {
    if (ev & EPOLLOUT) {
      if (!flush(inst)) return onRuntimeEof(inst);
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) return;
    char buf[64 << 10];
    bool eof = false;
    for (;;) {
      ssize_t n = ::read(inst->conn.get(), buf, sizeof buf);
      if (n > 0) {
        inst->decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
        if (static_cast<size_t>(n) < sizeof buf) break;
        continue;
      }
      if (n == 0) {
        eof = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) eof = true;
      break;
    }
    for (;;) {
      if (inst->state == State::kDead) return;
      runtime::Frame frame;
      auto r = inst->decoder.next(frame);
      if (!r.isOk()) {
        SLOG_WARN("instance {}: {}", inst->id, r.status().message());
        return instanceFailed(inst, "RuntimeExited",
                              "Runtime broke the protocol: " + r.status().message());
      }
      if (!r.value()) break;
      handleFrame(inst, frame);
    }
    if (eof && inst->state != State::kDead) onRuntimeEof(inst);
  }

  void handleFrame(const InstancePtr& inst, runtime::Frame& f) {
    switch (f.type) {
      case FrameType::kHello: {
        if (inst->state != State::kStarting || inst->gotHello) break;
        inst->gotHello = true;
        inst->helloAt = clock_.now();
        if (inst->blank) {  // a pooled runtime: wait for a function
          loop_->cancelTimer(inst->startTimer);
          inst->startTimer = 0;
          blankReady(inst);
          break;
        }
        if (inst->loadOnHello && !inst->codeDir.empty()) {
          Status st = inst->sandbox->attachCode(inst->codeDir);
          if (!st.isOk()) return failStart(inst, st.withContext("start instance " + inst->id));
        }
        sendLoad(inst);
        break;
      }
      case FrameType::kReady:
        if (inst->state == State::kStarting && inst->gotHello) markReady(inst);
        break;
      case FrameType::kInitError:
        if (inst->state == State::kStarting) {
          drainPipes(*inst);
          failStart(inst, Status(Code::kFailedPrecondition,
                                 errorBodyFromMeta(f.meta, "Runtime.InitError")));
        }
        break;
      case FrameType::kResult:
      case FrameType::kError: {
        const std::string rid = metaString(f.meta, "requestId");
        auto it = inst->calls.find(rid);
        if (it == inst->calls.end()) break;  // timed out meanwhile
        InvokeResult r;
        if (f.type == FrameType::kResult) {
          r.body = std::move(f.body);
        } else {
          bool handled = false;
          if (auto* h = f.meta.if_contains("handled"); h && h->is_bool()) handled = h->as_bool();
          r.functionError = handled ? FunctionErrorKind::kHandled : FunctionErrorKind::kUnhandled;
          r.body = errorBodyFromMeta(f.meta, "Error");
        }
        completeCall(inst, rid, std::move(r));
        break;
      }
      default:
        SLOG_WARN("instance {}: unexpected frame type {}", inst->id, static_cast<int>(f.type));
    }
  }

  void sendLoad(const InstancePtr& inst) {
    const FunctionSpec& fn = inst->fn;
    json::object meta;
    meta["handler"] = fn.handler;
    meta["codeDir"] = "/code";
    meta["functionName"] = fn.name;
    meta["memoryMb"] = fn.memoryMb;
    meta["timeoutSec"] = fn.timeoutSec;
    meta["initializer"] = fn.initializer;
    meta["instanceConcurrency"] = fn.instanceConcurrency;
    meta["initializationTimeoutSec"] = fn.initializationTimeoutSec;
    // The whole environment the function would have been started with: a pooled runtime was
    // started with a blank function's, and the bootstraps apply these before loading the code.
    json::object env;
    for (const std::string& kv : runtime::environmentFor(fn)) {
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    meta["env"] = std::move(env);
    send(inst, runtime::encodeFrame(FrameType::kLoad, meta));
    if (inst->state != State::kStarting) return;
    if (inst->startTimer != 0) loop_->cancelTimer(inst->startTimer);
    std::weak_ptr<Instance> weak = inst;
    inst->startTimer = loop_->addTimerAfter(
        std::chrono::seconds(fn.initializationTimeoutSec) + options_.startBudget, [this, weak] {
          if (auto i = weak.lock()) onStartTimeout(i);
        });
  }

  void send(const InstancePtr& inst, std::string bytes) {
    if (!inst->conn) return;
    if (inst->outOff == inst->out.size()) {
      inst->out.clear();
      inst->outOff = 0;
    }
    inst->out.append(bytes);
    if (!flush(inst)) onRuntimeEof(inst);
  }

  // Writes what it can; arms EPOLLOUT for the rest. False when the connection is broken.
  bool flush(const InstancePtr& inst) {
    while (inst->outOff < inst->out.size()) {
      ssize_t n = ::send(inst->conn.get(), inst->out.data() + inst->outOff,
                         inst->out.size() - inst->outOff, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        inst->outOff += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      return false;
    }
    const bool pending = inst->outOff < inst->out.size();
    if (pending != inst->writeArmed) {
      inst->writeArmed = pending;
      (void)loop_->modify(inst->conn.get(),
                          EPOLLIN | EPOLLRDHUP | (pending ? uint32_t{EPOLLOUT} : 0u));
    }
    if (!pending) {
      inst->out.clear();
      inst->outOff = 0;
    }
    return true;
  }

  // The runtime closed its socket: it is exiting. Give the pidfd a moment to say why.
  void onRuntimeEof(const InstancePtr& inst) {
    if (inst->conn) {
      loop_->remove(inst->conn.get());
      inst->conn.reset();
    }
    if (inst->eofTimer != 0 || inst->state == State::kDead) return;
    std::weak_ptr<Instance> weak = inst;
    inst->eofTimer = loop_->addTimerAfter(kExitGrace, [this, weak] {
      auto i = weak.lock();
      if (!i) return;
      i->eofTimer = 0;
      onProcessExit(i);  // exited after all, but the pidfd wake-up is still queued
      if (i->state != State::kDead) {
        instanceFailed(i, "RuntimeExited", "Runtime closed its connection to the worker");
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Custom runtime (HTTP).

  void connectProbe(const InstancePtr& inst) {
    inst->connectTimer = 0;
    if (inst->state != State::kStarting) return;
    auto fd = inst->sandbox->connectTcp(static_cast<uint16_t>(inst->fn.customRuntimeConfig.port));
    if (!fd.isOk()) {
      // A loopback connect to a port nobody listens on yet may fail at once rather than in
      // progress: that is "not yet", like a later SO_ERROR.
      const int err = fd.status().sysErrno();
      if (err == ECONNREFUSED || err == ECONNRESET || err == ECONNABORTED || err == EAGAIN ||
          err == ETIMEDOUT) {
        return scheduleProbe(inst);
      }
      return failStart(inst, fd.status().withContext("connect to custom runtime of " + inst->id));
    }
    auto c = std::make_unique<HttpConn>();
    c->fd = std::move(fd).value();
    tuneTcp(c->fd.get());
    c->use = HttpConn::Use::kProbe;
    if (addHttpConn(inst, std::move(c)) == nullptr) {
      failStart(inst, internalError("cannot watch a connection to the custom runtime"));
    }
  }

  void scheduleProbe(const InstancePtr& inst) {
    std::weak_ptr<Instance> weak = inst;
    inst->connectTimer = loop_->addTimerAfter(kConnectRetry, [this, weak] {
      if (auto i = weak.lock()) connectProbe(i);
    });
  }

  HttpConn* addHttpConn(const InstancePtr& inst, std::unique_ptr<HttpConn> c) {
    HttpConn* raw = c.get();
    std::weak_ptr<Instance> weak = inst;
    Status st =
        loop_->add(raw->fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP, [this, weak, raw](uint32_t ev) {
          if (auto i = weak.lock()) onHttpEvent(i, raw, ev);
        });
    if (!st.isOk()) {
      SLOG_WARN("instance {}: {}", inst->id, st.toString());
      return nullptr;
    }
    inst->http.push_back(std::move(c));
    return raw;
  }

  void closeHttpConn(Instance& inst, HttpConn* c) {
    loop_->remove(c->fd.get());
    auto it = std::find_if(inst.http.begin(), inst.http.end(),
                           [c](const auto& p) { return p.get() == c; });
    if (it != inst.http.end()) inst.http.erase(it);
  }

  void onHttpEvent(const InstancePtr& inst, HttpConn* c, uint32_t ev) {
    if (!c->connected) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(c->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err == 0 && !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
        return httpConnFailed(inst, c, err != 0 ? err : ECONNRESET);
      }
      c->connected = true;
      if (c->use == HttpConn::Use::kProbe) {
        if (inst->fn.initializer.empty()) {
          c->use = HttpConn::Use::kIdle;
          (void)loop_->modify(c->fd.get(), EPOLLIN | EPOLLRDHUP);
          markReady(inst);
          return;
        }
        c->use = HttpConn::Use::kInit;
        std::map<std::string, std::string> h = fcHeaders(inst->fn, newRequestId());
        h["x-fc-function-initializer"] = inst->fn.initializer;
        h["x-fc-initialization-timeout"] = std::to_string(inst->fn.initializationTimeoutSec);
        c->out = runtime::buildHttpRequest("POST", "/initialize", h, "");
      }
    }
    if (c->outOff < c->out.size()) {
      while (c->outOff < c->out.size()) {
        ssize_t n = ::send(c->fd.get(), c->out.data() + c->outOff, c->out.size() - c->outOff,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          c->outOff += static_cast<size_t>(n);
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && errno == EAGAIN) {
          break;
        } else {
          return httpConnFailed(inst, c, n < 0 ? errno : EPIPE);
        }
      }
      if (c->outOff == c->out.size()) {
        c->out.clear();
        c->outOff = 0;
        (void)loop_->modify(c->fd.get(), EPOLLIN | EPOLLRDHUP);
      } else {
        (void)loop_->modify(c->fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP);
      }
    } else if (ev & EPOLLOUT) {
      (void)loop_->modify(c->fd.get(), EPOLLIN | EPOLLRDHUP);
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) return;
    char buf[64 << 10];
    for (;;) {
      ssize_t n = ::read(c->fd.get(), buf, sizeof buf);
      if (n > 0) quickAck(c->fd.get());
      if (n > 0) {
        if (c->use == HttpConn::Use::kIdle) {  // unsolicited bytes: drop the connection
          return closeHttpConn(*inst, c);
        }
        auto r = c->parser.feed(std::string_view(buf, static_cast<size_t>(n)));
        if (!r.isOk()) return httpConnFailed(inst, c, EPROTO);
        if (r.value()) return onHttpResponse(inst, c);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (c->use == HttpConn::Use::kIdle) return closeHttpConn(*inst, c);
      if (n == 0 && (c->use == HttpConn::Use::kCall || c->use == HttpConn::Use::kInit)) {
        // A body delimited by the close (HTTP/1.0-style servers) is complete now.
        auto r = c->parser.feedEof();
        if (r.isOk() && r.value()) return onHttpResponse(inst, c);
      }
      // EOF or error before a whole response.
      return httpConnFailed(inst, c, n < 0 ? errno : ECONNRESET);
    }
  }

  std::map<std::string, std::string> fcHeaders(const FunctionSpec& fn, const std::string& rid) {
    return {
        {"x-fc-request-id", rid},
        {"x-fc-function-name", fn.name},
        {"x-fc-function-memory", std::to_string(fn.memoryMb)},
        {"x-fc-function-timeout", std::to_string(fn.timeoutSec)},
        {"x-fc-function-handler", fn.handler},
        {"content-type", "application/octet-stream"},
    };
  }

  void onHttpResponse(const InstancePtr& inst, HttpConn* c) {
    const bool keepAlive = c->parser.keepAlive();
    if (c->use == HttpConn::Use::kInit) {
      const int status = c->parser.status();
      if (status / 100 != 2) {
        std::string msg = "Initializer failed with HTTP status " + std::to_string(status);
        if (!c->parser.body().empty()) msg += ": " + c->parser.body().substr(0, 1024);
        return failStart(inst,
                         Status(Code::kFailedPrecondition, errorBody("Runtime.InitError", msg)));
      }
      c->parser.reset();
      c->use = HttpConn::Use::kIdle;
      if (!keepAlive) closeHttpConn(*inst, c);
      return markReady(inst);
    }
    if (c->use != HttpConn::Use::kCall) return closeHttpConn(*inst, c);
    InvokeResult r;
    r.httpStatus = c->parser.status();
    r.headers = c->parser.headers();
    r.body = c->parser.body();
    const std::string rid = std::move(c->requestId);
    c->parser.reset();
    c->use = HttpConn::Use::kIdle;
    c->requestId.clear();
    if (!keepAlive) closeHttpConn(*inst, c);
    completeCall(inst, rid, std::move(r));
  }

  void httpConnFailed(const InstancePtr& inst, HttpConn* c, int err) {
    const HttpConn::Use use = c->use;
    const bool reused = c->reused;
    const std::string rid = c->requestId;
    closeHttpConn(*inst, c);
    if (use == HttpConn::Use::kProbe) {
      if (inst->state != State::kStarting) return;
      // Not listening yet: try again shortly (the pidfd ends this if the process died).
      return scheduleProbe(inst);
    }
    if (use == HttpConn::Use::kInit) {
      return failStart(inst, Status(Code::kFailedPrecondition,
                                    errorBody("Runtime.InitError",
                                              std::string("Connection to the runtime failed "
                                                          "during the initializer: ") +
                                                  strerrorname_np(err))));
    }
    if (use != HttpConn::Use::kCall) return;
    auto it = inst->calls.find(rid);
    if (it == inst->calls.end()) return;
    if (reused && !it->second.resent && inst->state == State::kReady) {
      it->second.resent = true;
      return sendCustomCall(inst, rid);
    }
    // If the process is dying the pidfd will fire within the grace period and fail the call as
    // a crash; otherwise the server just dropped the connection.
    std::weak_ptr<Instance> weak = inst;
    it->second.graceTimer = loop_->addTimerAfter(kExitGrace, [this, weak, rid, err] {
      auto i = weak.lock();
      if (!i || i->state == State::kDead) return;
      auto ci = i->calls.find(rid);
      if (ci == i->calls.end()) return;
      ci->second.graceTimer = 0;
      InvokeResult r;
      r.status = unavailable("connection to the custom runtime of instance " + i->id +
                             " failed: " + strerrorname_np(err));
      completeCall(i, rid, std::move(r));
    });
  }

  void sendCustomCall(const InstancePtr& inst, const std::string& rid) {
    auto ci = inst->calls.find(rid);
    if (ci == inst->calls.end()) return;
    HttpConn* c = nullptr;
    for (auto& p : inst->http) {
      if (p->use == HttpConn::Use::kIdle && p->connected) {
        c = p.get();
        break;
      }
    }
    if (c == nullptr) {
      auto fd = inst->sandbox->connectTcp(static_cast<uint16_t>(inst->fn.customRuntimeConfig.port));
      if (!fd.isOk()) {
        InvokeResult r;
        r.status = fd.status().withContext("connect to custom runtime of " + inst->id);
        return completeCall(inst, rid, std::move(r));
      }
      auto nc = std::make_unique<HttpConn>();
      nc->fd = std::move(fd).value();
      tuneTcp(nc->fd.get());
      nc->use = HttpConn::Use::kCall;
      c = addHttpConn(inst, std::move(nc));
      if (c == nullptr) {
        InvokeResult r;
        r.status = internalError("cannot watch a connection to the custom runtime");
        return completeCall(inst, rid, std::move(r));
      }
    }
    c->reused = c->use == HttpConn::Use::kIdle;
    c->use = HttpConn::Use::kCall;
    c->requestId = rid;
    c->out = ci->second.httpRequest;
    c->outOff = 0;
    if (c->connected)
      onHttpEvent(inst, c, EPOLLOUT);
    else
      (void)loop_->modify(c->fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP);
  }

  // ---------------------------------------------------------------------------------------------
  // Calls.

  void invokeOnLoop(const std::string& id, InvokeRequest req, InvokeCallback done) {
    InvokeResult r;
    r.instanceId = id;
    auto it = instances_.find(id);
    if (it == instances_.end() || it->second->state == State::kDead) {
      r.status = unavailable("instance " + id + " is gone");
      r.instanceLost = true;
      return done(std::move(r));
    }
    InstancePtr inst = it->second;
    if (inst->state != State::kReady) {
      r.status = Status(Code::kFailedPrecondition, "instance " + id + " is not ready yet");
      return done(std::move(r));
    }
    // The scheduler keeps within instanceConcurrency; this guards the instance if it does not
    // (a runtime asked for more parallel calls than it was sized for may exhaust its pids limit).
    if (inst->calls.size() >= static_cast<size_t>(std::max(1, inst->fn.instanceConcurrency))) {
      r.status = Status(Code::kResourceExhausted,
                        "instance " + id + " already runs " + std::to_string(inst->calls.size()) +
                            " calls (instanceConcurrency " +
                            std::to_string(inst->fn.instanceConcurrency) + ")");
      return done(std::move(r));
    }
    if (req.requestId.empty()) req.requestId = newRequestId();
    const std::string rid = req.requestId;
    if (inst->calls.count(rid) != 0) {
      r.status = invalidArgument("request " + rid + " is already running on instance " + id);
      return done(std::move(r));
    }
    Call& call = inst->calls[rid];
    call.requestId = rid;
    call.done = std::move(done);
    call.start = clock_.now();
    call.logStart = inst->logTotal;
    call.wantLogTail = req.wantLogTail;
    if (inst->sandbox) call.cpuStartNs = inst->sandbox->usage().cpuTimeNs;
    std::weak_ptr<Instance> weak = inst;
    call.timer = loop_->addTimerAfter(std::chrono::seconds(inst->fn.timeoutSec), [this, weak, rid] {
      if (auto i = weak.lock()) onCallTimeout(i, rid);
    });
    if (inst->custom) {
      auto h = fcHeaders(inst->fn, rid);
      for (const auto& [k, v] : req.headers) {
        if (k != "x-fc-request-id") h[k] = v;
      }
      call.httpRequest = runtime::buildHttpRequest("POST", "/invoke", h, req.payload);
      return sendCustomCall(inst, rid);
    }
    json::object meta;
    meta["requestId"] = rid;
    meta["deadlineMs"] = unixMillisNow() + int64_t{inst->fn.timeoutSec} * 1000;
    meta["functionName"] = inst->fn.name;
    meta["memoryMb"] = inst->fn.memoryMb;
    send(inst, runtime::encodeFrame(FrameType::kInvoke, meta, req.payload));
  }

  // Finishes one call with r's outcome/body; fills the accounting.
  void completeCall(const InstancePtr& inst, const std::string& rid, InvokeResult r) {
    auto it = inst->calls.find(rid);
    if (it == inst->calls.end()) return;
    Call call = std::move(it->second);
    inst->calls.erase(it);
    if (call.timer != 0) loop_->cancelTimer(call.timer);
    if (call.graceTimer != 0) loop_->cancelTimer(call.graceTimer);
    fillAccounting(*inst, call, r);
    call.done(std::move(r));
  }

  void fillAccounting(Instance& inst, const Call& call, InvokeResult& r) {
    r.instanceId = inst.id;
    r.durationUs = micros(clock_.now() - call.start);
    if (inst.sandbox) {
      ResourceUsage u = inst.sandbox->usage();
      r.memoryPeakBytes = u.memoryPeakBytes;
      r.cpuTimeNs = std::max<int64_t>(0, u.cpuTimeNs - call.cpuStartNs);
    }
    if (call.wantLogTail) {
      // The runtime writes its log lines before the result frame; take what is in the pipes.
      drainPipes(inst);
      r.logTail = logTail(inst, call.logStart);
    }
    // The per-invocation record, in the function's own log like Lambda's REPORT line.
    std::string report = fmt::format(
        "REPORT RequestId: {}\tInstance: {}\tDuration: {:.2f} ms\tCPU Time: {:.2f} ms\t"
        "Memory Size: {} MB\tMax Memory Used: {} MB",
        call.requestId, inst.id, r.durationUs / 1e3, r.cpuTimeNs / 1e6, inst.fn.memoryMb,
        (r.memoryPeakBytes + (1 << 20) - 1) >> 20);
    if (inst.unreportedInitUs > 0) {
      report += fmt::format("\tInit Duration: {:.2f} ms", inst.unreportedInitUs / 1e3);
      inst.unreportedInitUs = 0;
    }
    report += '\n';
    appendLog(inst, report);
  }

  void onCallTimeout(const InstancePtr& inst, const std::string& rid) {
    auto it = inst->calls.find(rid);
    if (it == inst->calls.end() || inst->state == State::kDead) return;
    it->second.timer = 0;
    const std::string msg =
        "Function timed out after " + std::to_string(inst->fn.timeoutSec) + " seconds";
    // The timed-out call first, then recycle the instance: the handler may still be running.
    Call call = std::move(it->second);
    inst->calls.erase(it);
    InvokeResult r;
    r.functionError = FunctionErrorKind::kUnhandled;
    r.body = errorBody("FunctionTimeout", msg);
    r.instanceLost = true;
    fillAccounting(*inst, call, r);
    instanceFailed(inst, "RuntimeExited",
                   "The instance was recycled after another call on it timed out",
                   Status(Code::kDeadlineExceeded, "instance " + inst->id + ": " + msg));
    call.done(std::move(r));
  }

  // ---------------------------------------------------------------------------------------------
  // Death.

  void onProcessExit(const InstancePtr& inst) {
    if (inst->state == State::kDead) return;
    auto r = inst->sandbox->pollExit();
    if (r.isOk() && !r.value().has_value()) return;  // spurious wake-up
    ExitInfo info;
    if (r.isOk()) info = *r.value();
    // The pidfd stays readable once the process has gone; stop watching it.
    loop_->remove(inst->sandbox->pidFd());
    inst->pidFdWatched = false;
    const bool oom = info.oomKilled || inst->sandbox->oomKilled();
    drainPipes(*inst);
    if (inst->state == State::kStarting) {
      std::string msg = oom ? "Runtime exceeded the memory limit of " +
                                  std::to_string(inst->fn.memoryMb) + " MB during initialization"
                            : describeExit(info) + " during initialization";
      return failStart(inst, Status(Code::kFailedPrecondition,
                                    errorBody(oom ? "OutOfMemory" : "Runtime.ExitError", msg)));
    }
    if (oom) {
      const std::string msg = "Function exceeded its memory limit of " +
                              std::to_string(inst->fn.memoryMb) + " MB and was killed";
      return instanceFailed(inst, "OutOfMemory", msg,
                            Status(Code::kOutOfMemory, "instance " + inst->id + ": " + msg));
    }
    instanceFailed(inst, "RuntimeExited", describeExit(info));
  }

  // A templated runtime exited (its exit status belongs to the sandbox's init, which reaped it).
  void onRuntimeGone(const InstancePtr& inst) {
    std::optional<ExitInfo> exit;
    if (inst->runtimePidFd) {
      exit = exitFromPidFd(inst->runtimePidFd.get());
      // The pidfd turns readable as soon as the runtime exits, but the kernel records its exit
      // status only once the sandbox's init has reaped it: give init a few milliseconds.
      if (!exit && inst->state != State::kDead && inst->exitInfoTries < 50) {
        if (inst->exitInfoTries++ == 0) loop_->remove(inst->runtimePidFd.get());
        std::weak_ptr<Instance> weak = inst;
        loop_->addTimerAfter(std::chrono::milliseconds(2), [this, weak] {
          if (auto i = weak.lock()) onRuntimeGone(i);
        });
        return;
      }
    }
    const std::string how = exit ? describeExit(*exit) : std::string("Runtime exited");
    if (inst->runtimePidFd) {
      if (inst->exitInfoTries == 0) loop_->remove(inst->runtimePidFd.get());
      inst->runtimePidFd.reset();
    }
    if (inst->state == State::kDead) return;
    drainPipes(*inst);
    const bool oom = inst->sandbox->oomKilled();
    if (inst->state == State::kStarting) {
      return failStart(inst, Status(Code::kFailedPrecondition,
                                    errorBody(oom ? "OutOfMemory" : "Runtime.ExitError",
                                              oom ? "Runtime exceeded the memory limit of " +
                                                        std::to_string(inst->fn.memoryMb) +
                                                        " MB during initialization"
                                                  : how + " during initialization")));
    }
    if (oom) {
      const std::string msg = "Function exceeded its memory limit of " +
                              std::to_string(inst->fn.memoryMb) + " MB and was killed";
      return instanceFailed(inst, "OutOfMemory", msg,
                            Status(Code::kOutOfMemory, "instance " + inst->id + ": " + msg));
    }
    instanceFailed(inst, "RuntimeExited", how);
  }

  // The instance is unusable: every call in flight gets errorType/msg as a function error, the
  // instance is torn down, the lost handler hears `cause` (kUnavailable with msg by default).
  void instanceFailed(const InstancePtr& inst, const std::string& errorType, const std::string& msg,
                      std::optional<Status> cause = std::nullopt) {
    if (inst->state == State::kDead) return;
    if (inst->state != State::kReady) {  // still starting: that is a start failure
      return failStart(
          inst,
          Status(Code::kFailedPrecondition,
                 errorBody(errorType == "RuntimeExited" ? "Runtime.ExitError" : errorType, msg)));
    }
    drainPipes(*inst);
    std::vector<std::pair<InvokeCallback, InvokeResult>> out;
    for (auto& [rid, call] : inst->calls) {
      InvokeResult r;
      r.functionError = FunctionErrorKind::kUnhandled;
      r.body = errorBody(errorType, msg);
      r.instanceLost = true;
      fillAccounting(*inst, call, r);
      out.emplace_back(std::move(call.done), std::move(r));
    }
    inst->calls.clear();
    teardown(inst);
    Status st = cause ? *cause : unavailable("instance " + inst->id + ": " + msg);
    std::function<void(const std::string&, Status)> lost;
    {
      std::lock_guard<std::mutex> lock(lostMu_);
      lost = lostHandler_;
    }
    if (lost) lost(inst->id, st);
    for (auto& [done, r] : out) done(std::move(r));
  }

  // stopInstance / shutdown: no lost handler; calls fail with kAborted.
  void abortInstance(const InstancePtr& inst, const std::string& why) {
    if (inst->state == State::kDead) return;
    inst->cancelled = true;
    auto startDone = std::move(inst->startDone);
    std::vector<std::pair<InvokeCallback, InvokeResult>> out;
    for (auto& [rid, call] : inst->calls) {
      InvokeResult r;
      r.status = Status(Code::kAborted, why);
      r.instanceLost = true;
      fillAccounting(*inst, call, r);
      out.emplace_back(std::move(call.done), std::move(r));
    }
    inst->calls.clear();
    teardown(inst);
    if (startDone) startDone(Status(Code::kAborted, why));
    for (auto& [done, r] : out) done(std::move(r));
  }

  // Releases everything the instance holds on the loop; the sandbox and the state directory go
  // to the spawner thread (destroying a sandbox waits for its cgroup to empty).
  void teardown(InstancePtr inst) {  // by value: the caller's reference may be the map entry
    if (inst->state == State::kDead) return;
    inst->state = State::kDead;
    for (auto* t : {&inst->startTimer, &inst->connectTimer, &inst->eofTimer}) {
      if (*t != 0) loop_->cancelTimer(*t);
      *t = 0;
    }
    for (auto& [rid, call] : inst->calls) {
      if (call.timer != 0) loop_->cancelTimer(call.timer);
      if (call.graceTimer != 0) loop_->cancelTimer(call.graceTimer);
    }
    if (inst->pidFdWatched) loop_->remove(inst->sandbox->pidFd());
    inst->pidFdWatched = false;
    if (inst->runtimePidFd) {
      loop_->remove(inst->runtimePidFd.get());
      inst->runtimePidFd.reset();
    }
    drainPipes(*inst);
    for (UniqueFd* fd : {&inst->listenFd, &inst->conn, &inst->outPipe, &inst->errPipe}) {
      if (*fd) loop_->remove(fd->get());
      fd->reset();
    }
    for (auto& c : inst->http) loop_->remove(c->fd.get());
    inst->http.clear();
    auto it = instances_.find(inst->id);
    if (it != instances_.end() && it->second == inst) instances_.erase(it);
    count_ = instances_.size();
    if (inst->blank) {
      leavePool(*inst, /*taken=*/false);
      refillAll();
    }
    destroyLater(std::move(inst->sandbox), inst->dir);
  }

  void destroyLater(std::unique_ptr<Sandbox> sb, std::filesystem::path dir) {
    std::shared_ptr<Sandbox> shared(std::move(sb));
    spawner_->push([shared, dir]() mutable {
      if (shared) shared->kill();
      shared.reset();
      Status st = removeTree(dir);
      if (!st.isOk()) SLOG_WARN("worker: {}", st.toString());
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Logs.

  void readPipe(Instance& inst, UniqueFd& pipe) {
    if (!pipe) return;
    char buf[16 << 10];
    for (int rounds = 0; rounds < 8; ++rounds) {  // bounded: a chatty instance must not starve
      ssize_t n = ::read(pipe.get(), buf, sizeof buf);
      if (n > 0) {
        appendLog(inst, std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      loop_->remove(pipe.get());  // EOF: every writer is gone
      pipe.reset();
      return;
    }
  }

  void drainPipes(Instance& inst) {
    char buf[16 << 10];
    for (UniqueFd* p : {&inst.outPipe, &inst.errPipe}) {
      while (*p) {
        ssize_t n = ::read(p->get(), buf, sizeof buf);
        if (n > 0) {
          appendLog(inst, std::string_view(buf, static_cast<size_t>(n)));
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
          loop_->remove(p->get());
          p->reset();
        }
        break;
      }
    }
  }

  void appendLog(Instance& inst, std::string_view data) {
    if (inst.log && inst.log->fd) {
      size_t off = 0;
      while (off < data.size()) {
        ssize_t n = ::write(inst.log->fd.get(), data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          if (!inst.log->warned)
            SLOG_WARN("worker: log write for {}: {}", inst.fn.name, strerror(errno));
          inst.log->warned = true;
          break;
        }
        off += static_cast<size_t>(n);
      }
    }
    if (inst.ring.size() < kLogRingBytes) {
      if (inst.logTotal + data.size() <= kLogRingBytes) {
        inst.ring.append(data);
        inst.logTotal += data.size();
        return;
      }
      inst.ring.resize(kLogRingBytes);  // from now on a ring indexed by logTotal % size
    }
    // Only the last kLogRingBytes matter to the ring.
    if (data.size() > kLogRingBytes) {
      inst.logTotal += data.size() - kLogRingBytes;
      data.remove_prefix(data.size() - kLogRingBytes);
    }
    size_t pos = inst.logTotal % kLogRingBytes;
    const size_t first = std::min(data.size(), kLogRingBytes - pos);
    std::memcpy(inst.ring.data() + pos, data.data(), first);
    std::memcpy(inst.ring.data(), data.data() + first, data.size() - first);
    inst.logTotal += data.size();
  }

  std::string logTail(const Instance& inst, uint64_t from) {
    uint64_t start =
        std::max(from, inst.logTotal > kLogTailBytes ? inst.logTotal - kLogTailBytes : 0);
    std::string out;
    out.reserve(inst.logTotal - start);
    for (uint64_t i = start; i < inst.logTotal; ++i) out.push_back(inst.ring[i % kLogRingBytes]);
    return out;
  }

  // ---------------------------------------------------------------------------------------------

  const WorkerOptions options_;
  SandboxBackend& backend_;
  const Clock& clock_;
  Status initStatus_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<TaskThread> spawner_;
  std::atomic<bool> accepting_{false};
  std::atomic<size_t> count_{0};

  std::mutex shutdownMu_;
  bool shutDown_ = false;  // GUARDED_BY(shutdownMu_)

  // Loop thread only.
  std::unordered_map<std::string, InstancePtr> instances_;
  bool shuttingDown_ = false;
  std::map<std::string, PoolSlot> pool_;                 // by poolKeyOf(tenant, runtime, memoryMb)
  std::unordered_map<std::string, InstancePtr> blanks_;  // every blank, creating or warm
  int poolCreating_ = 0;
  // Templates: spawner thread only (their PDEATHSIG is tied to it). nodejs: one per heap-size
  // flag set, the kMaxNodeTemplates most recently used (least recent first in nodeZygoteUse_).
  std::unique_ptr<Zygote> pyZygote_;
  std::map<std::string, std::unique_ptr<Zygote>> nodeZygotes_;
  // Spawner thread only: runtimes whose template has forked a runtime at least once, and those
  // whose template proved unusable on this host before it ever did (exec'd from then on).
  std::set<std::string> templatesServed_, templatesOff_;
  std::list<std::string> nodeZygoteUse_;
  EventLoop::TimerId poolTimer_ = 0;
  WarmPoolStats stats_;

  mutable std::mutex statsMu_;
  WarmPoolStats publishedStats_;  // GUARDED_BY(statsMu_)

  std::mutex lostMu_;
  std::function<void(const std::string&, Status)> lostHandler_;  // GUARDED_BY(lostMu_)

  std::mutex logMu_;
  std::map<std::string, std::weak_ptr<LogSink>> logSinks_;  // GUARDED_BY(logMu_)
};

Worker::Worker(WorkerOptions options, SandboxBackend& backend, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), backend, clock)) {}

Worker::~Worker() { impl_->shutdown(); }

void Worker::startInstance(const std::string& instanceId, const FunctionSpec& fn,
                           const std::filesystem::path& codeDir,
                           std::function<void(Result<InstanceReady>)> done) {
  impl_->startInstance(instanceId, fn, codeDir, std::move(done));
}

Result<HostIds> Worker::codeOwner(const FunctionSpec& fn) { return impl_->codeOwner(fn); }

void Worker::invoke(const std::string& instanceId, InvokeRequest req, InvokeCallback done) {
  impl_->invoke(instanceId, std::move(req), std::move(done));
}

void Worker::stopInstance(const std::string& instanceId) { impl_->stopInstance(instanceId); }

void Worker::setInstanceLostHandler(std::function<void(const std::string&, Status)> h) {
  impl_->setLostHandler(std::move(h));
}

size_t Worker::instanceCount() const { return impl_->instanceCount(); }

WarmPoolStats Worker::poolStats() const { return impl_->poolStats(); }

void Worker::shutdown() { impl_->shutdown(); }

}  // namespace stratus
