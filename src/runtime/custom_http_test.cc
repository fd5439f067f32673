#include "runtime/custom_http.h"

#include <gtest/gtest.h>

#include <random>

namespace stratus::runtime {
namespace {

TEST(BuildHttpRequestTest, WritesRequestLineFramingHeadersAndBody) {
  std::string req = buildHttpRequest(
      "POST", "/invoke", {{"x-fc-request-id", "r-1"}, {"x-fc-function-name", "f"}}, "{\"a\":1}");
  EXPECT_EQ(req.rfind("POST /invoke HTTP/1.1\r\n", 0), 0u);
  EXPECT_NE(req.find("\r\nContent-Length: 7\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nConnection: keep-alive\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nHost: "), std::string::npos);
  EXPECT_NE(req.find("\r\nx-fc-request-id: r-1\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nx-fc-function-name: f\r\n"), std::string::npos);
  EXPECT_EQ(req.substr(req.size() - 11), "\r\n\r\n{\"a\":1}");
}

TEST(BuildHttpRequestTest, DropsHeadersThatWouldBreakFraming) {
  std::string req = buildHttpRequest("POST", "/invoke",
                                     {{"Content-Length", "999"},
                                      {"Transfer-Encoding", "chunked"},
                                      {"x-evil", "a\r\nContent-Length: 0"},
                                      {"bad name", "v"},
                                      {"x-ok", "fine"}},
                                     "");
  EXPECT_EQ(req.find("999"), std::string::npos);
  EXPECT_EQ(req.find("chunked"), std::string::npos);
  EXPECT_EQ(req.find("x-evil"), std::string::npos);
  EXPECT_EQ(req.find("bad name"), std::string::npos);
  EXPECT_NE(req.find("\r\nx-ok: fine\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nContent-Length: 0\r\n"), std::string::npos);
}

// Feeds `text` in pieces of `step` bytes; returns the parser's final answer.
Result<bool> feedInSteps(HttpResponseParser& p, std::string_view text, size_t step) {
  Result<bool> last = false;
  for (size_t off = 0; off < text.size(); off += step) {
    last = p.feed(text.substr(off, step));
    if (!last.isOk()) return last;
    if (*last && off + step < text.size()) return internalError("complete before the end");
  }
  return last;
}

TEST(HttpResponseParserTest, ContentLengthAtEverySplitPoint) {
  const std::string resp =
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Fc-Thing: A b\r\n"
      "Content-Length: 11\r\n\r\n{\"ok\":true}";
  for (size_t split = 0; split <= resp.size(); ++split) {
    HttpResponseParser p;
    auto r1 = p.feed(std::string_view(resp).substr(0, split));
    ASSERT_TRUE(r1.isOk()) << split << ": " << r1.status().toString();
    EXPECT_EQ(*r1, split == resp.size()) << split;
    auto r2 = p.feed(std::string_view(resp).substr(split));
    ASSERT_TRUE(r2.isOk()) << split << ": " << r2.status().toString();
    ASSERT_TRUE(*r2) << split;
    EXPECT_EQ(p.status(), 201);
    EXPECT_EQ(p.body(), "{\"ok\":true}");
    EXPECT_EQ(p.headers().at("content-type"), "application/json");
    EXPECT_EQ(p.headers().at("x-fc-thing"), "A b");  // names lower-cased, values kept
    EXPECT_TRUE(p.keepAlive());
  }
}

TEST(HttpResponseParserTest, ChunkedByteAtATimeWithExtensionsAndTrailers) {
  const std::string resp =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n"
      "1A\r\n abcdefghijklmnopqrstuvwxy\r\n"
      "0\r\nX-Trailer: t\r\n\r\n";
  HttpResponseParser p;
  auto r = feedInSteps(p, resp, 1);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(*r);
  EXPECT_EQ(p.body(), "hello abcdefghijklmnopqrstuvwxy");
  EXPECT_TRUE(p.keepAlive());
}

TEST(HttpResponseParserTest, ChunkedInOneFeedAndInOddPieces) {
  std::string resp = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
  std::string expect;
  for (int i = 1; i < 40; ++i) {
    std::string chunk(static_cast<size_t>(i * 7), static_cast<char>('a' + i % 26));
    char size[16];
    snprintf(size, sizeof size, "%x", static_cast<unsigned>(chunk.size()));
    resp += std::string(size) + "\r\n" + chunk + "\r\n";
    expect += chunk;
  }
  resp += "0\r\n\r\n";
  for (size_t step : {resp.size(), size_t{3}, size_t{7}, size_t{64}}) {
    HttpResponseParser p;
    auto r = feedInSteps(p, resp, step);
    ASSERT_TRUE(r.isOk()) << step << ": " << r.status().toString();
    ASSERT_TRUE(*r) << step;
    EXPECT_EQ(p.body(), expect);
  }
}

TEST(HttpResponseParserTest, NoBodyStatusesAndInterimResponses) {
  HttpResponseParser p;
  auto r = p.feed("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
  ASSERT_TRUE(r.isOk());
  EXPECT_TRUE(*r);
  EXPECT_EQ(p.status(), 204);
  EXPECT_TRUE(p.body().empty());

  p.reset();
  r = p.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_TRUE(*r);
  EXPECT_EQ(p.status(), 200);
  EXPECT_EQ(p.body(), "hi");
}

TEST(HttpResponseParserTest, BodyUntilCloseNeedsEof) {
  // Python's http.server (HTTP/1.0, no Content-Length) answers like this.
  HttpResponseParser p;
  auto r = p.feed("HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6\r\n\r\nsome ");
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(*r);
  r = p.feed("bytes");
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(*r);
  r = p.feedEof();
  ASSERT_TRUE(r.isOk());
  EXPECT_TRUE(*r);
  EXPECT_EQ(p.body(), "some bytes");
  EXPECT_FALSE(p.keepAlive());
}

TEST(HttpResponseParserTest, EofBeforeTheEndIsAnError) {
  HttpResponseParser p;
  ASSERT_TRUE(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").isOk());
  EXPECT_FALSE(p.feedEof().isOk());
  p.reset();
  EXPECT_FALSE(p.feedEof().isOk());
  p.reset();
  ASSERT_TRUE(p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").isOk());
  EXPECT_FALSE(p.feedEof().isOk());
}

TEST(HttpResponseParserTest, KeepAliveFollowsVersionAndConnectionHeader) {
  HttpResponseParser p;
  ASSERT_TRUE(*p.feed("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(p.keepAlive());
  p.reset();
  ASSERT_TRUE(*p.feed("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(p.keepAlive());
  p.reset();
  ASSERT_TRUE(*p.feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(p.keepAlive());
}

TEST(HttpResponseParserTest, ResetAllowsTheNextResponseOnTheSameConnection) {
  HttpResponseParser p;
  ASSERT_TRUE(*p.feed("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad"));
  EXPECT_EQ(p.status(), 500);
  p.reset();
  EXPECT_EQ(p.status(), 0);
  EXPECT_TRUE(p.headers().empty());
  ASSERT_TRUE(*p.feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  EXPECT_EQ(p.status(), 200);
  EXPECT_EQ(p.body(), "ok");
}

TEST(HttpResponseParserTest, ToleratesBareLineFeeds) {
  HttpResponseParser p;
  auto r = p.feed("HTTP/1.1 200 OK\nContent-Length: 1\n\nx");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_TRUE(*r);
  EXPECT_EQ(p.body(), "x");
}

bool rejects(std::string_view text) {
  HttpResponseParser p;
  auto r = p.feed(text);
  return !r.isOk();
}

TEST(HttpResponseParserTest, RejectsGarbage) {
  EXPECT_TRUE(rejects("garbage garbage\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/2 200 OK\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 2x0 OK\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 700 Nope\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX"));
  EXPECT_TRUE(rejects("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA"));
  // Same Content-Length twice is allowed.
  EXPECT_FALSE(rejects("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"));
}

TEST(HttpResponseParserTest, EnforcesSizeLimits) {
  HttpResponseParser p;
  auto r = p.feed("HTTP/1.1 200 OK\r\nContent-Length: " +
                  std::to_string(HttpResponseParser::kMaxBytes + 1) + "\r\n\r\n");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kPayloadTooLarge);

  p.reset();
  r = p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFF\r\n");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kPayloadTooLarge);

  // An endless head is cut off long before kMaxBytes.
  p.reset();
  std::string head = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 5000; ++i) head += "X-Filler-" + std::to_string(i) + ": some value\r\n";
  EXPECT_FALSE(p.feed(head).isOk());

  // A body delimited by close cannot grow past the limit either.
  p.reset();
  ASSERT_TRUE(p.feed("HTTP/1.0 200 OK\r\n\r\n").isOk());
  std::string mb(1 << 20, 'x');
  Result<bool> last = false;
  for (int i = 0; i < 70 && last.isOk(); ++i) last = p.feed(mb);
  ASSERT_FALSE(last.isOk());
  EXPECT_EQ(last.status().code(), Code::kPayloadTooLarge);
}

// Mutated responses fed in random pieces: the parser completes or reports an error, never more.
TEST(HttpResponseParserTest, SurvivesMutatedResponses) {
  std::mt19937 rng(11);
  const std::string samples[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
      "HTTP/1.0 404 Not Found\r\n\r\nnope"};
  int errors = 0, complete = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string s = samples[round % 3];
    for (int m = 0; m < 1 + static_cast<int>(rng() % 3); ++m) {
      s[rng() % s.size()] = "0123456789abcdefABCDEF\r\n :;-"[rng() % 31];
    }
    HttpResponseParser p;
    size_t off = 0;
    Result<bool> r = false;
    while (off < s.size()) {
      size_t len = std::min<size_t>(1 + rng() % 7, s.size() - off);
      r = p.feed(std::string_view(s).substr(off, len));
      off += len;
      if (!r.isOk() || *r) break;
    }
    if (r.isOk() && !*r) r = p.feedEof();
    if (!r.isOk()) {
      ++errors;
    } else if (*r) {
      ++complete;
      EXPECT_LE(p.body().size(), s.size());
      EXPECT_GE(p.status(), 100);
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(complete, 0);
}

}  // namespace
}  // namespace stratus::runtime
