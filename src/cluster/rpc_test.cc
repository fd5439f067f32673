// The cluster wire formats (rpc.h): the exact JSON of the etcd records and the lease, their
// round trips, the error mapping and the invocation encoding. Pure functions: no etcd, no server.
#include "cluster/rpc.h"

#include <gtest/gtest.h>

namespace stratus::cluster {
namespace {

TEST(RpcWireTest, WorkerInfoJsonIsStableAndRoundTrips) {
  WorkerInfo w;
  w.id = "w1";
  w.zone = "z";
  w.url = "http://127.0.0.1:1";
  w.blobUrl = "http://127.0.0.1:2";
  w.memoryMb = 4096;
  w.cpuMillis = 2000;
  w.maxInstances = 7;
  w.incarnation = "abc";
  EXPECT_EQ(toJson(w),
            R"({"id":"w1","zone":"z","url":"http://127.0.0.1:1","blobUrl":"http://127.0.0.1:2",)"
            R"("memoryMb":4096,"cpuMillis":2000,"maxInstances":7,"incarnation":"abc"})");
  auto back = workerFromJson(toJson(w));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(toJson(*back), toJson(w));

  auto noZone = workerFromJson(R"({"id":"w2","url":"http://h:1"})");
  ASSERT_TRUE(noZone.isOk());
  EXPECT_EQ(noZone->zone, "default");
  EXPECT_EQ(noZone->memoryMb, 0);
  EXPECT_EQ(workerFromJson(R"({"id":"w3"})").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(workerFromJson("[1]").status().code(), Code::kInvalidArgument);
}

TEST(RpcWireTest, LeaderAndLeaseCarryTheEpochAsADecimalString) {
  LeaderInfo l{"c1", "http://api", "http://rpc", "http://blob", 7587892345678901234};
  EXPECT_EQ(toJson(l), R"({"id":"c1","apiUrl":"http://api","rpcUrl":"http://rpc",)"
                       R"("blobUrl":"http://blob","epoch":"7587892345678901234"})");
  auto lb = leaderFromJson(toJson(l));
  ASSERT_TRUE(lb.isOk());
  EXPECT_EQ(lb->epoch, 7587892345678901234);
  EXPECT_EQ(lb->rpcUrl, "http://rpc");

  GrantedLease g;
  g.leaseId = "L1";
  g.functionKey = "t/f";
  g.instanceId = "i1";
  g.hostId = "w1";
  g.workerUrl = "http://w";
  g.revision = 3;
  g.runtime = "python3";
  g.timeoutSec = 9;
  g.coldStart = true;
  g.initDurationUs = 1234;
  g.epoch = 42;
  EXPECT_EQ(toJson(g), R"({"leaseId":"L1","functionKey":"t/f","instanceId":"i1","hostId":"w1",)"
                       R"("workerUrl":"http://w","revision":3,"runtime":"python3","timeoutSec":9,)"
                       R"("coldStart":true,"initDurationUs":1234,"epoch":"42"})");
  auto gb = leaseFromJson(toJson(g));
  ASSERT_TRUE(gb.isOk());
  EXPECT_EQ(toJson(*gb), toJson(g));
  EXPECT_EQ(leaseFromJson(R"({"leaseId":"L1"})").status().code(), Code::kInvalidArgument);
  // A field of another type reads as its zero value, as before.
  auto odd = leaseFromJson(R"({"leaseId":"L","workerUrl":"u","revision":"x","epoch":"nope"})");
  ASSERT_TRUE(odd.isOk());
  EXPECT_EQ(odd->revision, 0);
  EXPECT_EQ(odd->epoch, 0);
}

TEST(RpcWireTest, ErrorsRoundTripTheirCode) {
  Status st = statusFromRpc(rpcError(Status(Code::kNotFound, "no such instance")), "stop");
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(), "no such instance");
  HttpResponse bogus;
  bogus.status = 500;
  bogus.body = R"({"code": 99, "message": "m"})";
  EXPECT_EQ(statusFromRpc(bogus, "x").code(), Code::kInternal);
  bogus.body = R"({"code": 0, "message": "m"})";
  EXPECT_EQ(statusFromRpc(bogus, "x").code(), Code::kInternal);
  bogus.body = "not json";
  EXPECT_EQ(statusFromRpc(bogus, "x").code(), Code::kInternal);
  HttpResponse ok;
  ok.status = 200;
  EXPECT_TRUE(statusFromRpc(ok, "x").isOk());
}

TEST(RpcWireTest, InvocationsRoundTripWithTheirHeaders) {
  InvokeRequest req;
  req.requestId = "r1";
  req.payload = "{\"a\":1}";
  req.wantLogTail = true;
  req.headers = {{"x-fc-trace", "t"}, {"Content-Type", "text/plain"}};
  HttpRequest http;
  http.headers = encodeInvokeRequest(req);
  EXPECT_EQ(http.headers.at("x-stratus-h-x-fc-trace"), "t");
  http.body = req.payload;
  InvokeRequest back = decodeInvokeRequest(http);
  EXPECT_EQ(back.requestId, "r1");
  EXPECT_TRUE(back.wantLogTail);
  EXPECT_EQ(back.payload, req.payload);
  EXPECT_EQ(back.headers, req.headers);

  InvokeResult r;
  r.status = Status(Code::kDeadlineExceeded, "timed out");
  r.functionError = FunctionErrorKind::kUnhandled;
  r.httpStatus = 202;
  r.instanceLost = true;
  r.durationUs = 55;
  r.memoryPeakBytes = 1 << 20;
  r.logTail = "tail\n";
  r.instanceId = "i9";
  r.headers = {{"x-custom", "v"}};
  r.body = "body";
  InvokeResult rb = decodeInvokeResult(encodeInvokeResult(r));
  EXPECT_EQ(rb.status.code(), Code::kDeadlineExceeded);
  EXPECT_EQ(rb.status.message(), "timed out");
  EXPECT_EQ(rb.functionError, FunctionErrorKind::kUnhandled);
  EXPECT_EQ(rb.httpStatus, 202);
  EXPECT_TRUE(rb.instanceLost);
  EXPECT_EQ(rb.durationUs, 55);
  EXPECT_EQ(rb.memoryPeakBytes, 1 << 20);
  EXPECT_EQ(rb.logTail, "tail\n");
  EXPECT_EQ(rb.instanceId, "i9");
  EXPECT_EQ(rb.headers, r.headers);
  EXPECT_EQ(rb.body, "body");

  HttpResponse wild = encodeInvokeResult(r);
  wild.headers["x-stratus-code"] = "77";
  EXPECT_EQ(decodeInvokeResult(wild).status.code(), Code::kInternal);
  wild.headers.erase("x-stratus-code");
  EXPECT_EQ(decodeInvokeResult(wild).status.code(), Code::kInternal);
}

}  // namespace
}  // namespace stratus::cluster
