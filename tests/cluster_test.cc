// Cluster mode, multi-process: a real etcd on loopback and the real `stratus controller`,
// `stratus worker` and `stratus gateway` daemons, killed with SIGKILL where the issue says so.
//
//   WorkerDeathAndEtcdLoss  deploy through a gateway, invoke; warm calls make no controller round
//                           trip; etcd down: warm calls still served; kill -9 the worker that
//                           served: the next calls succeed on the other worker (other zone).
//   LeaderFailoverAndRestart kill -9 the leading controller: the stand-by takes over, deploys and
//                           invokes keep working; then stop everything (etcd included) and start
//                           it again: nothing is lost.
// Run alone with `ctest -L cluster`.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <thread>

#include "cluster/etcd_client.h"
#include "cluster/testing.h"
#include "common/base64.h"
#include "common/fs.h"
#include "common/json.h"
#include "http/http_client.h"
#include "sandbox/process_sandbox.h"
#include "tests/e2e_util.h"

namespace stratus {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::waitFor;

constexpr char kPython[] = R"(
import time
def handler(event, context):
    if "mark" in event:
        print(event["mark"], flush=True)
    time.sleep(event.get("sleep", 0))
    return {"echo": event, "fn": context.function_name}
)";

constexpr char kPythonV2[] = R"(
def handler(event, context):
    return {"version": 2}
)";

class Cluster {
 public:
  explicit Cluster(const std::filesystem::path& root) : root_(root) {}

  Status startEtcd() {
    ASSIGN_OR_RETURN(etcd_, testing::EtcdServer::start(root_ / "etcd"));
    return Status::ok();
  }
  testing::EtcdServer& etcd() { return *etcd_; }

  // A daemon on a fixed free port (so that a restart keeps its address).
  Status start(const std::string& name, std::vector<std::string> args) {
    uint16_t port;
    if (auto it = ports_.find(name); it != ports_.end()) {
      port = it->second;
    } else {
      ASSIGN_OR_RETURN(port, testing::freePort());
      ports_[name] = port;
    }
    std::vector<std::string> argv = {STRATUS_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--etcd", etcd_->url(), "--listen",
                             "127.0.0.1:" + std::to_string(port), "--lease-ttl", "3"});
    ASSIGN_OR_RETURN(procs_[name], ChildProcess::spawn(argv, root_ / (name + ".log")));
    return Status::ok();
  }
  Status controller(const std::string& name) {
    return start(name, {"controller", "--data-dir", (root_ / name).string(), "--id", name,
                        "--keep-alive", "600"});
  }
  Status worker(const std::string& name, const std::string& zone) {
    return start(name, {"worker", "--data-dir", (root_ / name).string(), "--id", name, "--zone",
                        zone, "--no-pool"});
  }
  Status gateway(const std::string& name) {
    return start(name, {"gateway", "--hold-idle-ms", "20000"});
  }

  std::string url(const std::string& name) {
    return "http://127.0.0.1:" + std::to_string(ports_.at(name));
  }
  ChildProcess& proc(const std::string& name) { return *procs_.at(name); }
  void kill(const std::string& name, int sig = SIGKILL) {
    if (procs_.count(name)) procs_[name]->stop(sig, 15s);
  }
  bool healthy(const std::string& name) {
    auto r = httpRequest(url(name), "GET", "/healthz", {}, {}, 1s);
    return r.isOk() && r->status == 200;
  }
  std::string logs() {
    std::string out;
    for (auto& [name, p] : procs_) {
      std::string log = p->log();
      if (log.size() > 3000) log = log.substr(log.size() - 3000);
      out += "==== " + name + " ====\n" + log + "\n";
    }
    return out;
  }

 private:
  std::filesystem::path root_;
  std::unique_ptr<testing::EtcdServer> etcd_;
  std::map<std::string, uint16_t> ports_;
  std::map<std::string, std::unique_ptr<ChildProcess>> procs_;
};

std::string readKey(const std::filesystem::path& file) {
  auto text = readFile(file);
  if (!text) return {};
  std::string k = *text;
  while (!k.empty() && isspace(static_cast<unsigned char>(k.back()))) k.pop_back();
  return k;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/etcd", X_OK) != 0) GTEST_SKIP() << "etcd-server is not installed";
    cluster_ = std::make_unique<Cluster>(tmp_.path());
    ASSERT_TRUE(cluster_->startEtcd().isOk());
  }
  void TearDown() override {
    if (HasFailure() && cluster_) {
      std::cerr << cluster_->logs();
      // Keep every daemon's whole log for a look after the temporary dir is gone.
      std::filesystem::path keep = "/tmp/stratus-cluster-test-logs-" + std::to_string(getpid());
      std::error_code ec;
      std::filesystem::create_directories(keep, ec);
      for (const auto& e : std::filesystem::directory_iterator(tmp_.path(), ec)) {
        if (e.path().extension() == ".log") {
          std::filesystem::copy_file(e.path(), keep / e.path().filename(),
                                     std::filesystem::copy_options::overwrite_existing, ec);
        }
      }
      std::cerr << "daemon logs kept in " << keep << "\n";
    }
    cluster_.reset();
    // Workers killed with SIGKILL cannot remove their sandbox state dir on tmpfs
    // (ProcessSandboxOptions::forDataDir, named after the data dir), and no restart follows.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(tmp_.path(), ec)) {
      if (!e.is_directory(ec)) continue;
      std::filesystem::remove_all(
          std::filesystem::path("/dev/shm") / ProcessSandboxOptions::nameForDataDir(e.path()), ec);
    }
  }

  Result<HttpResponse> call(const std::string& endpoint, const std::string& method,
                            const std::string& target, const std::string& body = {}) {
    HttpHeaders h{{"Authorization", "Bearer " + key_}};
    if (!body.empty()) h["Content-Type"] = "application/json";
    return httpRequest(endpoint, method, target, h, body, 60s);
  }
  Result<HttpResponse> invoke(const std::string& gw, const std::string& fn,
                              const std::string& payload) {
    return call(gw, "POST", "/2023-03-30/functions/" + fn + "/invocations", payload);
  }
  Status deploy(const std::string& gw, const std::string& fn, const std::string& extra = {}) {
    std::string zip = e2e::makeZip({{"index.py", kPython, 0644, ""}});
    auto r = call(gw, "POST", "/2023-03-30/functions",
                  e2e::functionSpec(fn, "python3", "index.handler", zip, extra));
    if (!r) return r.status();
    if (r->status != 200) return internalError("deploy " + fn + ": " + r->body);
    return Status::ok();
  }
  // Polls until the invocation answers 200 (a leader or workers may still be joining).
  Result<HttpResponse> invokeEventually(const std::string& gw, const std::string& fn,
                                        const std::string& payload,
                                        std::chrono::milliseconds timeout = 20s) {
    Result<HttpResponse> last = unavailable("not tried");
    waitFor(
        [&] {
          last = invoke(gw, fn, payload);
          return last.isOk() && last->status == 200;
        },
        timeout);
    return last;
  }
  int64_t metric(const std::string& gw, const std::string& name) {
    auto r = httpRequest(gw, "GET", "/metrics", {}, {}, 2s);
    if (!r) return -1;
    size_t at = r->body.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(r->body.substr(at + name.size() + 2));
  }
  // Boots etcd (already up), two controllers (c1 leads), two workers in two zones, a gateway.
  void boot() {
    ASSERT_TRUE(cluster_->controller("c1").isOk());
    ASSERT_TRUE(waitFor([&] { return cluster_->healthy("c1"); }, 30s)) << "c1 never led";
    ASSERT_TRUE(cluster_->controller("c2").isOk());
    ASSERT_TRUE(cluster_->worker("w1", "zone-a").isOk());
    ASSERT_TRUE(cluster_->worker("w2", "zone-b").isOk());
    ASSERT_TRUE(cluster_->gateway("g1").isOk());
    ASSERT_TRUE(waitFor([&] { return cluster_->healthy("g1"); }, 30s));
    key_ = readKey(tmp_.path() / "c1" / "admin-key");
    ASSERT_FALSE(key_.empty());
    auto etcd = EtcdClient::create(cluster_->etcd().url());
    ASSERT_TRUE(etcd.isOk());
    ASSERT_TRUE(waitFor(
        [&] {
          auto members = (*etcd)->getPrefix("/stratus/cluster/workers/", true);
          return members.isOk() && members->size() == 2;
        },
        30s))
        << "workers did not register";
  }

  e2e::TempDir tmp_;
  std::unique_ptr<Cluster> cluster_;
  std::string key_;
};

TEST_F(ClusterTest, WorkerDeathAndEtcdLoss) {
  ASSERT_NO_FATAL_FAILURE(boot());
  const std::string gw = cluster_->url("g1");
  ASSERT_TRUE(deploy(gw, "echo").isOk());

  auto first = invokeEventually(gw, "echo", R"({"n":1})");
  ASSERT_TRUE(first.isOk()) << first.status().toString();
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_NE(first->body.find(R"("echo": {"n": 1})"), std::string::npos) << first->body;
  EXPECT_EQ(first->headers["x-fc-cold-start"], "true");
  const std::string served = first->headers["x-stratus-worker-id"];
  ASSERT_TRUE(served == "w1" || served == "w2") << served;
  const std::string other = served == "w1" ? "w2" : "w1";

  // Warm calls: served with the lease the gateway holds, no controller round trip.
  int64_t acquires = metric(gw, "stratus_gateway_lease_acquires_total");
  ASSERT_GE(acquires, 1);
  for (int i = 0; i < 5; ++i) {
    auto r = invoke(gw, "echo", R"({"n":2})");
    ASSERT_TRUE(r.isOk());
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->headers["x-fc-cold-start"], "false");
    EXPECT_EQ(r->headers["x-stratus-worker-id"], served);
  }
  EXPECT_EQ(metric(gw, "stratus_gateway_lease_acquires_total"), acquires);

  // etcd goes away: the gateway keeps serving warm traffic from what it holds.
  cluster_->etcd().kill();
  for (int i = 0; i < 3; ++i) {
    auto r = invoke(gw, "echo", R"({"n":3})");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->status, 200) << r->body;
  }
  ASSERT_TRUE(cluster_->etcd().restart().isOk());

  // Zones: two calls at once need two instances (concurrency 1); they go to both zones.
  ASSERT_TRUE(deploy(gw, "spread", R"("timeout":30)").isOk());
  {
    Result<HttpResponse> a = unavailable(""), b = unavailable("");
    std::thread t([&] { a = invokeEventually(gw, "spread", R"({"sleep":1})"); });
    b = invokeEventually(gw, "spread", R"({"sleep":1})");
    t.join();
    ASSERT_TRUE(a.isOk() && b.isOk());
    ASSERT_EQ(a->status, 200) << a->body;
    ASSERT_EQ(b->status, 200) << b->body;
    EXPECT_NE(a->headers["x-fc-instance-id"], b->headers["x-fc-instance-id"]);
    EXPECT_NE(a->headers["x-stratus-worker-id"], b->headers["x-stratus-worker-id"])
        << "both instances in one zone";
  }

  // The worker that served dies between calls: the next calls never reached it, so they are
  // retried and run on the other worker (the other zone).
  cluster_->kill(served);
  for (int i = 0; i < 3; ++i) {
    auto r = invokeEventually(gw, "echo", R"({"n":4})", 15s);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->headers["x-stratus-worker-id"], other);
  }
  EXPECT_GE(metric(gw, "stratus_gateway_retries_total"), 1);

  // It comes back (a new incarnation: the controller resets it before using it again).
  ASSERT_TRUE(cluster_->worker(served, served == "w1" ? "zone-a" : "zone-b").isOk());
  ASSERT_TRUE(waitFor([&] { return cluster_->healthy(served); }, 20s));

  // A call running when its worker dies has reached the function: it fails clearly and is not
  // run again elsewhere. The gateway's lease is on `other`, so the slow call runs there.
  {
    Result<HttpResponse> slow = unavailable("");
    std::thread t([&] { slow = invoke(gw, "echo", R"({"sleep":20,"mark":"slow-call-running"})"); });
    // The handler prints the mark when it runs: the call has reached the function.
    bool running = waitFor(
        [&] {
          auto log = readFile(tmp_.path() / other / "logs" / "default" / "echo.log");
          return log.isOk() && log->find("slow-call-running") != std::string::npos;
        },
        20s);
    cluster_->kill(other);
    t.join();
    ASSERT_TRUE(running) << "the slow call never started on " << other;
    ASSERT_TRUE(slow.isOk()) << slow.status().toString();
    EXPECT_EQ(slow->status, 503) << slow->body;
    EXPECT_NE(slow->body.find("not retried"), std::string::npos) << slow->body;
  }
  {
    auto r = invokeEventually(gw, "echo", R"({"n":5})", 20s);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->headers["x-stratus-worker-id"], served);
  }

  // CRUD through the gateway reaches the controller's API.
  auto list = call(gw, "GET", "/2023-03-30/functions");
  ASSERT_TRUE(list.isOk());
  EXPECT_EQ(list->status, 200);
  EXPECT_NE(list->body.find(R"("functionName":"echo")"), std::string::npos) << list->body;
  auto unauth = httpRequest(gw, "POST", "/2023-03-30/functions/echo/invocations", {}, "{}", 5s);
  ASSERT_TRUE(unauth.isOk());
  EXPECT_EQ(unauth->status, 401);

  // A tenant quota set through the API applies on the gateway's direct path too.
  auto quota = call(gw, "PUT", "/admin/tenants/default", R"({"functionRequestsPerSecond":1})");
  ASSERT_TRUE(quota.isOk());
  ASSERT_EQ(quota->status, 200) << quota->body;
  EXPECT_TRUE(waitFor(
      [&] {
        auto r = invoke(gw, "echo", "{}");
        return r.isOk() && r->status == 429 && r->headers.count("Retry-After") > 0;
      },
      10s))
      << "the quota never applied";
  EXPECT_GE(metric(gw, "stratus_gateway_rate_limited_total"), 1);
}

TEST_F(ClusterTest, LeaderFailoverAndRestart) {
  ASSERT_NO_FATAL_FAILURE(boot());
  const std::string gw = cluster_->url("g1");
  ASSERT_TRUE(deploy(gw, "before").isOk());
  auto r = invokeEventually(gw, "before", R"({"k":"v"})");
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_FALSE(cluster_->healthy("c2")) << "the stand-by must not serve the API";

  // The leader dies; the stand-by takes over once the leader's lease expires.
  cluster_->kill("c1");
  ASSERT_TRUE(waitFor([&] { return cluster_->healthy("c2"); }, 20s)) << "c2 did not take over";
  Status deployed = unavailable("not tried");
  waitFor(
      [&] {
        deployed = deploy(gw, "after");
        return deployed.isOk();
      },
      15s);
  ASSERT_TRUE(deployed.isOk()) << deployed.toString();
  for (const char* fn : {"before", "after"}) {
    auto res = invokeEventually(gw, fn, R"({"k":"w"})");
    ASSERT_TRUE(res.isOk()) << fn << ": " << res.status().toString();
    EXPECT_EQ(res->status, 200) << fn << ": " << res->body;
    EXPECT_NE(res->body.find(std::string(R"("fn": ")") + fn), std::string::npos) << res->body;
  }
  // The leader's own API invokes too (its ClusterInvoker), and async invocations through the
  // gateway are queued in etcd and run by the leader's dispatcher.
  {
    auto direct = call(cluster_->url("c2"), "POST", "/2023-03-30/functions/before/invocations",
                       R"({"via":"controller"})");
    ASSERT_TRUE(direct.isOk());
    EXPECT_EQ(direct->status, 200) << direct->body;
    EXPECT_NE(direct->body.find("controller"), std::string::npos) << direct->body;

    HttpHeaders h{{"Authorization", "Bearer " + key_},
                  {"x-fc-invocation-type", "Async"},
                  {"x-fc-request-id", "async-cluster-1"}};
    auto accepted = httpRequest(gw, "POST", "/2023-03-30/functions/before/invocations", h,
                                R"({"async":true})", 10s);
    ASSERT_TRUE(accepted.isOk());
    ASSERT_EQ(accepted->status, 202) << accepted->body;
    std::string task;
    EXPECT_TRUE(waitFor(
        [&] {
          auto r = call(gw, "GET", "/2023-03-30/functions/before/async-tasks/async-cluster-1");
          if (r.isOk()) task = r->body;
          return r.isOk() && r->body.find(R"("status":"Succeeded")") != std::string::npos;
        },
        20s))
        << task;
  }

  // An update through the gateway: the next call runs the new code (the held lease is dropped).
  {
    std::string zip = e2e::makeZip({{"index.py", kPythonV2, 0644, ""}});
    auto up = call(gw, "PUT", "/2023-03-30/functions/after",
                   R"({"code":{"zipFile":")" + base64Encode(zip) + R"("}})");
    ASSERT_TRUE(up.isOk());
    ASSERT_EQ(up->status, 200) << up->body;
    auto res = invoke(gw, "after", "{}");
    ASSERT_TRUE(res.isOk());
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_NE(res->body.find(R"("version": 2)"), std::string::npos) << res->body;
  }

  // Everything stops (etcd too) and starts again: nothing is lost.
  for (const char* name : {"g1", "w1", "w2", "c2"}) cluster_->kill(name, SIGTERM);
  ASSERT_TRUE(cluster_->etcd().restart().isOk());
  ASSERT_TRUE(cluster_->controller("c1").isOk());
  ASSERT_TRUE(cluster_->controller("c2").isOk());
  ASSERT_TRUE(cluster_->worker("w1", "zone-a").isOk());
  ASSERT_TRUE(cluster_->worker("w2", "zone-b").isOk());
  ASSERT_TRUE(cluster_->gateway("g1").isOk());
  ASSERT_TRUE(waitFor([&] { return cluster_->healthy("g1"); }, 30s));
  Result<HttpResponse> list = unavailable("not tried");
  waitFor(
      [&] {
        list = call(gw, "GET", "/2023-03-30/functions");
        return list.isOk() && list->status == 200;
      },
      20s);
  ASSERT_TRUE(list.isOk());
  ASSERT_EQ(list->status, 200) << list->body;
  EXPECT_NE(list->body.find(R"("functionName":"before")"), std::string::npos) << list->body;
  EXPECT_NE(list->body.find(R"("functionName":"after")"), std::string::npos) << list->body;
  for (const char* fn : {"before", "after"}) {
    auto res = invokeEventually(gw, fn, R"({"k":"x"})");
    ASSERT_TRUE(res.isOk()) << fn << ": " << res.status().toString();
    EXPECT_EQ(res->status, 200) << fn << ": " << res->body;
  }
}

}  // namespace
}  // namespace stratus
