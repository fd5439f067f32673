// Overload at more than 10x capacity (label "load", ~15 s): wrk hammers a function whose
// capacity is 2 instances x 1 call x 50 ms = 40 calls/s with 200 connections. The front door
// must refuse the excess at once (503 FunctionQueueFull with Retry-After), the server must not
// crash, its memory must stay bounded, and /healthz must stay fast: p99 under 50 ms, measured
// by a separate client while the load runs.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "common/json.h"
#include "tests/e2e_util.h"

namespace stratus::e2e {
namespace {

using namespace std::chrono_literals;

const char* kCode = R"PY(
import time
def handler(event, context):
    time.sleep(0.05)
    return {"ok": True}
)PY";

int64_t rssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

TEST(OverloadTest, TenTimesCapacityKeepsHealthzFastAndMemoryBounded) {
  if (runCommand({"wrk", "--version"}).second.find("wrk") == std::string::npos) {
    GTEST_SKIP() << "wrk is not installed (scripts/setup.sh installs it)";
  }
  TempDir dir;
  auto started = Server::start(dir.path() / "data");
  ASSERT_TRUE(started.isOk()) << started.status().toString();
  auto server = std::move(started).value();
  auto created = server->createFunction(functionSpec("busy", "python3", "index.handler",
                                                     makeZip({{"index.py", kCode, 0644, ""}}),
                                                     R"("maxInstances":2)"));
  ASSERT_TRUE(created.isOk());
  ASSERT_EQ(created->status, 200) << created->body;
  auto warm = server->invoke("busy");
  ASSERT_TRUE(warm.isOk());
  ASSERT_EQ(warm->status, 200) << warm->body;
  const int64_t rssBefore = rssKb(server->pid());

  std::string script = (dir.path() / "post.lua").string();
  {
    std::ofstream lua(script);
    lua << "wrk.method = \"POST\"\nwrk.body = \"{}\"\n"
        << "wrk.headers[\"Authorization\"] = \"Bearer " << server->key() << "\"\n"
        << "wrk.headers[\"Content-Type\"] = \"application/json\"\n";
  }
  std::atomic<bool> loadDone{false};
  std::pair<int, std::string> wrkResult;
  std::thread load([&] {
    wrkResult = runCommand({"wrk", "-t2", "-c200", "-d10s", "--latency", "-s", script,
                            server->endpoint() + "/2023-03-30/functions/busy/invocations"});
    loadDone = true;
  });

  // Health probes on their own connection while the load runs.
  std::vector<double> healthMs;
  int64_t rssPeak = rssBefore;
  auto client = HttpClient::connect(server->endpoint(), 5s);
  ASSERT_TRUE(client.isOk());
  std::this_thread::sleep_for(500ms);  // let the load ramp up
  while (!loadDone) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = (*client)->request("GET", "/healthz");
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->status, 200);
    healthMs.push_back(ms);
    rssPeak = std::max(rssPeak, rssKb(server->pid()));
    std::this_thread::sleep_for(20ms);
  }
  load.join();
  ASSERT_EQ(wrkResult.first, 0) << wrkResult.second;
  std::sort(healthMs.begin(), healthMs.end());
  ASSERT_GT(healthMs.size(), 100u);
  double p50 = healthMs[healthMs.size() / 2];
  double p99 = healthMs[healthMs.size() * 99 / 100];
  // wrk's own summary, for the record.
  std::printf("%s\n", wrkResult.second.c_str());
  std::printf(
      "healthz under load: n=%zu p50=%.2f ms p99=%.2f ms max=%.2f ms; RSS %lld -> peak %lld KB\n",
      healthMs.size(), p50, p99, healthMs.back(), static_cast<long long>(rssBefore),
      static_cast<long long>(rssPeak));
  EXPECT_LT(p99, 50.0);

  // The server is alive and serves the function again once the bounded queue drained (at most
  // 66 calls at 40/s).
  int lastStatus = 0;
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto after = server->invoke("busy");
    ASSERT_TRUE(after.isOk()) << after.status().toString();
    lastStatus = after->status;
    if (lastStatus == 200) break;
    EXPECT_EQ(lastStatus, 503) << after->body;
    EXPECT_EQ(after->headers["Retry-After"], "1");
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(lastStatus, 200);
  // Excess was refused at the door, not queued: the counters say so.
  auto metrics = httpRequest(server->endpoint(), "GET", "/metrics");
  ASSERT_TRUE(metrics.isOk());
  auto line = [&](const std::string& prefix) -> int64_t {
    size_t at = metrics->body.find("\n" + prefix + " ");
    return at == std::string::npos ? -1
                                   : std::atoll(metrics->body.c_str() + at + prefix.size() + 2);
  };
  int64_t refused = line("stratus_admission_refused_total{reason=\"queue_full\"}");
  int64_t ok = line("stratus_http_requests_total{code=\"2xx\"}");
  int64_t unavailable = line("stratus_http_requests_total{code=\"5xx\"}");
  std::printf("refused at the door: %lld, 2xx: %lld, 5xx: %lld\n", static_cast<long long>(refused),
              static_cast<long long>(ok), static_cast<long long>(unavailable));
  EXPECT_GT(refused, 10 * ok) << "the offered load was not 10x what was served";
  // Bounded memory: refusals cost no growth beyond the bounded queues and connections.
  EXPECT_LT(rssPeak - rssBefore, 200 * 1024)
      << "RSS grew from " << rssBefore << " to " << rssPeak << " KB";
  EXPECT_EQ(::kill(server->pid(), 0), 0) << "the server died";
}

}  // namespace
}  // namespace stratus::e2e
