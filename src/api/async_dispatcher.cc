#include "api/async_dispatcher.h"

#include <algorithm>
#include <random>

#include "api/validation.h"
#include "common/log.h"

namespace stratus {
namespace {

int64_t toMs(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

int64_t durationMs(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// "acs:fc:cn-hangzhou:123:functions/name" or "name" -> "name".
std::string destinationName(std::string_view d) {
  size_t at = d.rfind("functions/");
  if (at != std::string_view::npos) d.remove_prefix(at + std::string_view("functions/").size());
  return std::string(d);
}

Result<std::string> parseDestination(const json::object& dc, std::string_view which) {
  const json::value* v = dc.if_contains(which);
  if (v == nullptr || v->is_null()) return std::string();
  if (!v->is_object()) {
    return invalidArgument("destinationConfig." + std::string(which) +
                           " must be an object {\"destination\": \"<function>\"}");
  }
  ASSIGN_OR_RETURN(auto dest, getString(v->as_object(), "destination"));
  if (!dest || dest->empty()) {
    return invalidArgument("destinationConfig." + std::string(which) + ".destination is required");
  }
  std::string name = destinationName(*dest);
  if (!validation::isValidFunctionName(name)) {
    return invalidArgument("destinationConfig." + std::string(which) +
                           ".destination must name a function, got '" + *dest + "'");
  }
  return name;
}

json::value jsonOrString(const std::string& text) {
  auto v = parseJson(text);
  if (v.isOk()) return std::move(v).value();
  return json::value(text);
}

std::string errorJson(std::string_view type, std::string_view message) {
  json::object o;
  o["errorType"] = type;
  o["errorMessage"] = message;
  return json::serialize(o);
}

}  // namespace

Result<AsyncInvokeConfig> parseAsyncInvokeConfig(std::string_view body) {
  ASSIGN_OR_RETURN(json::object o, validation::parseBodyObject(body));
  AsyncInvokeConfig c;
  ASSIGN_OR_RETURN(auto retries, getInt(o, "maxAsyncRetryAttempts"));
  if (retries) {
    if (*retries < 0 || *retries > AsyncInvokeConfig::kMaxRetryAttempts) {
      return invalidArgument("maxAsyncRetryAttempts must be between 0 and 8");
    }
    c.maxAsyncRetryAttempts = static_cast<int>(*retries);
  }
  ASSIGN_OR_RETURN(auto age, getInt(o, "maxAsyncEventAgeInSeconds"));
  if (age) {
    if (*age < 1 || *age > AsyncInvokeConfig::kMaxEventAgeSec) {
      return invalidArgument("maxAsyncEventAgeInSeconds must be between 1 and 86400");
    }
    c.maxAsyncEventAgeInSeconds = *age;
  }
  if (const json::value* dc = o.if_contains("destinationConfig"); dc && !dc->is_null()) {
    if (!dc->is_object()) return invalidArgument("destinationConfig must be an object");
    ASSIGN_OR_RETURN(c.onSuccess, parseDestination(dc->as_object(), "onSuccess"));
    ASSIGN_OR_RETURN(c.onFailure, parseDestination(dc->as_object(), "onFailure"));
  }
  return c;
}

json::object asyncInvokeConfigToJson(const AsyncInvokeConfig& c) {
  json::object o;
  o["maxAsyncRetryAttempts"] = c.maxAsyncRetryAttempts;
  o["maxAsyncEventAgeInSeconds"] = c.maxAsyncEventAgeInSeconds;
  json::object dc;
  if (!c.onSuccess.empty()) dc["onSuccess"] = json::object{{"destination", c.onSuccess}};
  if (!c.onFailure.empty()) dc["onFailure"] = json::object{{"destination", c.onFailure}};
  if (!dc.empty()) o["destinationConfig"] = std::move(dc);
  return o;
}

TimePoint WallClock::now() const {
  return TimePoint(
      std::chrono::duration_cast<Duration>(std::chrono::system_clock::now().time_since_epoch()));
}

struct AsyncDispatcher::Shared {
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // GUARDED_BY(mu)
  bool notified = false;  // GUARDED_BY(mu)
  bool alive = true;      // GUARDED_BY(mu): false once the dispatcher is gone
  int inFlight = 0;       // GUARDED_BY(mu)
  int completing = 0;     // GUARDED_BY(mu): callbacks using the dispatcher right now
  std::mutex rngMu;
  std::function<double()> uniform01;  // GUARDED_BY(rngMu)
};

AsyncDispatcher::AsyncDispatcher(MetadataStore& store, Invoker& invoker, const Clock& wallClock,
                                 AsyncOptions options, SpecLookup lookup,
                                 std::function<double()> uniform01)
    : store_(store),
      invoker_(invoker),
      clock_(wallClock),
      options_(options),
      lookup_(std::move(lookup)),
      shared_(std::make_shared<Shared>()) {
  if (!uniform01) {
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    uniform01 = [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
  }
  shared_->uniform01 = std::move(uniform01);
}

AsyncDispatcher::~AsyncDispatcher() { stop(); }

Status AsyncDispatcher::recover() {
  ASSIGN_OR_RETURN(int64_t n, store_.requeueRunningAsyncTasks(toMs(clock_.now())));
  if (n > 0) SLOG_INFO("async: requeued {} task(s) interrupted by the previous process", n);
  return Status::ok();
}

void AsyncDispatcher::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { loop(); });
}

void AsyncDispatcher::stop() {
  std::unique_lock lock(shared_->mu);
  if (!shared_->alive) return;
  shared_->stopping = true;
  shared_->cv.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
  lock.lock();
  // Let running calls record their outcome (the owner shuts the invoker down first, which ends
  // them); whatever is still running after that is requeued by the next start.
  shared_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return shared_->inFlight == 0; });
  shared_->alive = false;
  shared_->cv.wait(lock, [&] { return shared_->completing == 0; });
}

void AsyncDispatcher::notify() {
  std::lock_guard lock(shared_->mu);
  shared_->notified = true;
  shared_->cv.notify_all();
}

int AsyncDispatcher::inFlight() const {
  std::lock_guard lock(shared_->mu);
  return shared_->inFlight;
}

bool AsyncDispatcher::waitIdle(Duration timeout) {
  std::unique_lock lock(shared_->mu);
  return shared_->cv.wait_for(lock, timeout, [&] { return shared_->inFlight == 0; });
}

Duration AsyncDispatcher::backoff(int attempt) {
  Duration d = options_.baseBackoff;
  for (int i = 1; i < attempt && d < options_.maxBackoff; ++i) d *= 2;
  d = std::min(d, options_.maxBackoff);
  double u;
  {
    std::lock_guard lock(shared_->rngMu);
    u = std::clamp(shared_->uniform01(), 0.0, 1.0);
  }
  return d / 2 + std::chrono::duration_cast<Duration>(d / 2 * u);
}

void AsyncDispatcher::loop() {
  std::unique_lock lock(shared_->mu);
  while (!shared_->stopping) {
    lock.unlock();
    runDue();
    Duration wait = options_.idlePoll;
    // All slots busy: a finishing task notifies, so do not poll the store meanwhile.
    if (inFlight() >= options_.maxInFlight) {
      // wait stays idlePoll
    } else if (auto next = store_.nextAsyncTaskDueMs(); next.isOk() && next->has_value()) {
      int64_t ms = **next - toMs(clock_.now());
      wait = std::clamp<Duration>(std::chrono::milliseconds(ms), std::chrono::milliseconds(1),
                                  options_.idlePoll);
    }
    lock.lock();
    shared_->cv.wait_for(lock, wait, [&] { return shared_->stopping || shared_->notified; });
    shared_->notified = false;
  }
}

int AsyncDispatcher::runDue() {
  int free;
  {
    std::lock_guard lock(shared_->mu);
    if (!shared_->alive) return 0;
    free = options_.maxInFlight - shared_->inFlight;
    if (free <= 0) return 0;
    shared_->inFlight += free;  // reserve the slots while claiming
  }
  auto claimed = store_.claimDueAsyncTasks(toMs(clock_.now()), free);
  int n = claimed.isOk() ? static_cast<int>(claimed->size()) : 0;
  {
    std::lock_guard lock(shared_->mu);
    shared_->inFlight -= free - n;
    if (free - n > 0) shared_->cv.notify_all();
  }
  if (!claimed.isOk()) {
    SLOG_ERROR("async: claim due tasks: {}", claimed.status().toString());
    return 0;
  }
  for (AsyncTask& t : *claimed) start(std::move(t));
  return n;
}

namespace {

// The outcome of one attempt as the task records it.
struct Outcome {
  enum Kind { kSuccess, kFailure, kRefused, kAborted, kGone, kExpired } kind;
  Duration retryAfter{0};
  std::string error;  // JSON
};

Outcome classify(const InvokeResult& r) {
  if (r.status.isOk()) {
    if (r.functionError == FunctionErrorKind::kNone) return {Outcome::kSuccess, {}, {}};
    std::string err = r.body;
    if (!parseJson(err).isOk()) err = errorJson("FunctionError", r.body);
    return {Outcome::kFailure, {}, err};
  }
  const std::string error = errorJson(codeName(r.status.code()), r.status.message());
  if (auto it = r.headers.find("Retry-After"); it != r.headers.end()) {
    int64_t s = std::atoll(it->second.c_str());
    return {Outcome::kRefused, std::chrono::seconds(std::max<int64_t>(1, s)), error};
  }
  if (r.status.code() == Code::kAborted) return {Outcome::kAborted, {}, error};
  if (r.status.code() == Code::kNotFound) return {Outcome::kGone, {}, error};
  if (r.status.code() == Code::kResourceExhausted) return {Outcome::kRefused, {}, error};
  return {Outcome::kFailure, {}, error};
}

}  // namespace

void AsyncDispatcher::start(AsyncTask task) {
  const int64_t now = toMs(clock_.now());
  // Done before running: the finish step below, shared by every path.
  auto finish = [this](AsyncTask t, const Outcome& o, const InvokeResult* r) {
    const int64_t at = toMs(clock_.now());
    AsyncInvokeConfig cfg;
    if (auto text = store_.getAsyncConfig(t.tenant, t.function); text.isOk()) {
      if (auto parsed = parseAsyncInvokeConfig(*text); parsed.isOk()) cfg = *parsed;
    }
    const bool tooOld = at - t.createdMs > cfg.maxAsyncEventAgeInSeconds * 1000;
    t.updatedMs = at;
    std::string condition;
    switch (o.kind) {
      case Outcome::kSuccess:
        t.status = AsyncTaskStatus::kSucceeded;
        t.result = r->body.substr(0, options_.maxResultBytes);
        t.lastError.clear();
        condition = "Success";
        break;
      case Outcome::kRefused:
      case Outcome::kAborted:
        // The platform declined or stopped: not the function's attempt.
        t.attempts = std::max(0, t.attempts - 1);
        t.lastError = o.error;
        if (tooOld) {
          t.status = AsyncTaskStatus::kFailed;
          condition = "EventAgeExceeded";
        } else {
          t.status = AsyncTaskStatus::kEnqueued;
          Duration wait = o.kind == Outcome::kAborted  ? Duration(std::chrono::seconds(1))
                          : o.retryAfter > Duration(0) ? o.retryAfter
                                                       : options_.refusedRetry;
          t.nextAttemptMs = at + durationMs(wait);
        }
        break;
      case Outcome::kGone:
        t.status = AsyncTaskStatus::kFailed;
        t.lastError = o.error;
        condition = "FunctionNotFound";
        break;
      case Outcome::kExpired:
        t.attempts = std::max(0, t.attempts - 1);  // claimed but never run
        t.status = AsyncTaskStatus::kFailed;
        t.lastError = o.error;
        condition = "EventAgeExceeded";
        break;
      case Outcome::kFailure:
        t.lastError = o.error;
        if (t.attempts > cfg.maxAsyncRetryAttempts) {
          t.status = AsyncTaskStatus::kFailed;
          condition = "RetriesExhausted";
        } else if (tooOld) {
          t.status = AsyncTaskStatus::kFailed;
          condition = "EventAgeExceeded";
        } else {
          t.status = AsyncTaskStatus::kEnqueued;
          t.nextAttemptMs = at + durationMs(backoff(t.attempts));
        }
        break;
    }
    // Destination first: if we die between the two writes the task runs again and the
    // destination task (same id) is not duplicated.
    const std::string& dest = t.status == AsyncTaskStatus::kSucceeded ? cfg.onSuccess
                              : t.status == AsyncTaskStatus::kFailed  ? cfg.onFailure
                                                                      : std::string();
    if (!dest.empty()) {
      json::object ev;
      ev["timestamp"] = at;
      ev["requestContext"] = json::object{{"requestId", t.id},
                                          {"functionName", t.function},
                                          {"condition", condition},
                                          {"approximateInvokeCount", t.attempts}};
      ev["requestPayload"] = jsonOrString(t.payload);
      if (t.status == AsyncTaskStatus::kSucceeded) {
        ev["responseContext"] = json::object{{"statusCode", r->httpStatus}};
        ev["responsePayload"] = jsonOrString(r->body);
      } else {
        ev["responseContext"] = json::object{{"functionError", "Unhandled"}};
        ev["responsePayload"] = jsonOrString(t.lastError);
      }
      AsyncTask d;
      d.tenant = t.tenant;
      d.function = dest;
      d.id = t.id + (t.status == AsyncTaskStatus::kSucceeded ? "-onSuccess" : "-onFailure");
      d.payload = json::serialize(ev);
      d.createdMs = at;
      d.nextAttemptMs = at;
      d.updatedMs = at;
      Status s = store_.enqueueAsyncTask(d);
      if (!s.isOk() && s.code() != Code::kAlreadyExists) {
        SLOG_ERROR("async: enqueue destination {} of task {}: {}", dest, t.id, s.toString());
      }
    }
    if (Status s = store_.updateAsyncTask(t); !s.isOk()) {
      // The task stays Running; the next start requeues it (at least once holds).
      SLOG_ERROR("async: record the outcome of task {}: {}", t.id, s.toString());
    }
  };

  // Checks that need no call.
  AsyncInvokeConfig cfg;
  if (auto text = store_.getAsyncConfig(task.tenant, task.function); text.isOk()) {
    if (auto parsed = parseAsyncInvokeConfig(*text); parsed.isOk()) cfg = *parsed;
  }
  auto spec = lookup_(task.tenant, task.function);
  std::optional<Outcome> early;
  if (!spec.isOk()) {
    early = Outcome{Outcome::kGone,
                    {},
                    errorJson("FunctionNotFound", "function " + task.function + " does not exist")};
  } else if (now - task.createdMs > cfg.maxAsyncEventAgeInSeconds * 1000) {
    early =
        Outcome{Outcome::kExpired,
                {},
                errorJson("EventAgeExceeded", "the event is older than " +
                                                  std::to_string(cfg.maxAsyncEventAgeInSeconds) +
                                                  " s (maxAsyncEventAgeInSeconds)")};
  }
  if (early) {
    finish(std::move(task), *early, nullptr);
    std::lock_guard lock(shared_->mu);
    --shared_->inFlight;
    shared_->cv.notify_all();
    return;
  }

  InvokeRequest req;
  req.requestId = task.id;
  req.payload = task.payload;
  if (auto h = parseJson(task.headersJson); h.isOk() && h->is_object()) {
    for (const auto& kv : h->as_object()) {
      if (kv.value().is_string()) {
        req.headers[std::string(kv.key())] = std::string(kv.value().as_string());
      }
    }
  }
  req.headers["x-fc-request-id"] = task.id;
  req.headers["x-fc-invocation-type"] = "Async";
  std::shared_ptr<const FunctionSpec> fn = std::move(*spec);
  const FunctionSpec& fnRef = *fn;
  invoker_.invoke(fnRef, std::move(req),
                  [this, shared = shared_, fn, task = std::move(task),
                   finish = std::move(finish)](InvokeResult r) mutable {
                    {
                      std::lock_guard lock(shared->mu);
                      if (!shared->alive) return;
                      ++shared->completing;
                    }
                    Outcome o = classify(r);
                    finish(std::move(task), o, &r);
                    std::lock_guard lock(shared->mu);
                    --shared->completing;
                    --shared->inFlight;
                    shared->notified = true;  // a slot is free
                    shared->cv.notify_all();
                  });
}

}  // namespace stratus
