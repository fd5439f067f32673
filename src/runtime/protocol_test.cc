#include "runtime/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace stratus::runtime {
namespace {

std::string header(uint32_t magic, uint16_t version, uint16_t type, uint32_t metaLen,
                   uint32_t bodyLen) {
  FrameHeader h{magic, version, type, metaLen, bodyLen};  // the test host is little-endian
  return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}

TEST(ProtocolTest, EncodesLittleEndianHeaderThenMetaThenBody) {
  json::object meta{{"requestId", "r-1"}};
  std::string f = encodeFrame(FrameType::kInvoke, meta, "BODY");
  const std::string metaText = R"({"requestId":"r-1"})";
  ASSERT_EQ(f.size(), 16 + metaText.size() + 4);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(f.data());
  EXPECT_EQ(std::string(f.data(), 4), "STRF");  // kFrameMagic spelled out on the wire
  EXPECT_EQ(p[4] | p[5] << 8, kProtocolVersion);
  EXPECT_EQ(p[6] | p[7] << 8, 5);
  EXPECT_EQ(p[8] | p[9] << 8 | p[10] << 16 | p[11] << 24, static_cast<int>(metaText.size()));
  EXPECT_EQ(p[12] | p[13] << 8 | p[14] << 16 | p[15] << 24, 4);
  EXPECT_EQ(f.substr(16, metaText.size()), metaText);
  EXPECT_EQ(f.substr(16 + metaText.size()), "BODY");
}

TEST(ProtocolTest, RoundTripsSeveralFramesFromOneFeed) {
  std::string stream = encodeFrame(FrameType::kHello, {{"runtime", "python3"}, {"pid", 7}}) +
                       encodeFrame(FrameType::kResult, {{"requestId", "a"}}, "{\"x\":1}") +
                       encodeFrame(FrameType::kError, {{"requestId", "b"}}, std::string(1, '\0'));
  FrameDecoder d;
  d.feed(stream);
  Frame f;
  auto r = d.next(f);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(*r);
  EXPECT_EQ(f.type, FrameType::kHello);
  EXPECT_EQ(f.meta.at("runtime").as_string(), "python3");
  EXPECT_EQ(f.meta.at("pid").as_int64(), 7);
  EXPECT_TRUE(f.body.empty());
  ASSERT_TRUE(*d.next(f));
  EXPECT_EQ(f.type, FrameType::kResult);
  EXPECT_EQ(f.body, "{\"x\":1}");
  ASSERT_TRUE(*d.next(f));
  EXPECT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(f.body, std::string(1, '\0'));
  r = d.next(f);
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(*r);
}

TEST(ProtocolTest, DecodesByteAtATime) {
  std::string body(5000, 'x');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 31);
  std::string stream =
      encodeFrame(FrameType::kInvoke, {{"requestId", "r"}, {"deadlineMs", 5}}, body) +
      encodeFrame(FrameType::kLoad, {{"handler", "app.handler"}});
  FrameDecoder d;
  std::vector<Frame> got;
  for (char c : stream) {
    d.feed(std::string_view(&c, 1));
    Frame f;
    for (;;) {
      auto r = d.next(f);
      ASSERT_TRUE(r.isOk()) << r.status().toString();
      if (!*r) break;
      got.push_back(std::move(f));
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].type, FrameType::kInvoke);
  EXPECT_EQ(got[0].body, body);
  EXPECT_EQ(got[0].meta.at("deadlineMs").as_int64(), 5);
  EXPECT_EQ(got[1].type, FrameType::kLoad);
  EXPECT_EQ(got[1].meta.at("handler").as_string(), "app.handler");
}

TEST(ProtocolTest, DecodesRandomSplits) {
  std::mt19937 rng(42);
  std::string stream;
  for (int i = 0; i < 50; ++i) {
    stream += encodeFrame(FrameType::kResult, {{"requestId", std::to_string(i)}},
                          std::string(rng() % 3000, 'b'));
  }
  FrameDecoder d;
  size_t off = 0;
  int n = 0;
  while (off < stream.size()) {
    size_t len = std::min<size_t>(1 + rng() % 700, stream.size() - off);
    d.feed(std::string_view(stream).substr(off, len));
    off += len;
    Frame f;
    while (true) {
      auto r = d.next(f);
      ASSERT_TRUE(r.isOk());
      if (!*r) break;
      EXPECT_EQ(f.meta.at("requestId").as_string(), std::to_string(n));
      ++n;
    }
  }
  EXPECT_EQ(n, 50);
}

TEST(ProtocolTest, EmptyMetaSectionIsAnEmptyObject) {
  FrameDecoder d;
  d.feed(header(kFrameMagic, kProtocolVersion, 6, 0, 2) + "ok");
  Frame f;
  ASSERT_TRUE(*d.next(f));
  EXPECT_TRUE(f.meta.empty());
  EXPECT_EQ(f.body, "ok");
}

Status decodeError(const std::string& bytes) {
  FrameDecoder d;
  d.feed(bytes);
  Frame f;
  auto r = d.next(f);
  if (r.isOk()) return Status::ok();
  return r.status();
}

TEST(ProtocolTest, RejectsMalformedStreams) {
  const std::string meta = "{}";
  EXPECT_FALSE(decodeError(header(0x12345678, kProtocolVersion, 1, 2, 0) + meta).isOk());
  EXPECT_FALSE(decodeError(header(kFrameMagic, 2, 1, 2, 0) + meta).isOk());
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 0, 2, 0) + meta).isOk());
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 99, 2, 0) + meta).isOk());
  // Oversized lengths are rejected from the header alone, before any allocation.
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 1, kMaxMetaBytes + 1, 0)).isOk());
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 1, 2, kMaxBodyBytes + 1)).isOk());
  // Meta must be a JSON object.
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 1, 2, 0) + "[]").isOk());
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 1, 3, 0) + "\"x\"").isOk());
  EXPECT_FALSE(decodeError(header(kFrameMagic, kProtocolVersion, 1, 3, 0) + "{a}").isOk());
  // Garbage that happens to be long enough for a header.
  EXPECT_FALSE(decodeError("GET / HTTP/1.1\r\nHost: x\r\n\r\n").isOk());
  // Just under the limits is fine.
  EXPECT_TRUE(decodeError(header(kFrameMagic, kProtocolVersion, 1, 2, 0) + meta).isOk());
}

TEST(ProtocolTest, WaitsForTheWholeFrameBeforeReportingIt) {
  std::string f = encodeFrame(FrameType::kResult, {{"requestId", "x"}}, std::string(100, 'z'));
  FrameDecoder d;
  d.feed(std::string_view(f).substr(0, f.size() - 1));
  Frame out;
  auto r = d.next(out);
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(*r);
  d.feed(std::string_view(f).substr(f.size() - 1));
  r = d.next(out);
  ASSERT_TRUE(r.isOk());
  EXPECT_TRUE(*r);
  EXPECT_EQ(out.body.size(), 100u);
}

// Mutated frames fed in random pieces: the decoder either yields frames or reports an error; it
// never reads out of bounds (run under -DSTRATUS_SANITIZE=address to make that loud).
TEST(ProtocolTest, SurvivesMutatedStreams) {
  std::mt19937 rng(7);
  const std::string valid = encodeFrame(FrameType::kInvoke, {{"requestId", "r"}}, "{\"a\":1}") +
                            encodeFrame(FrameType::kResult, {{"requestId", "r"}}, "body");
  int errors = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string s = valid;
    for (int m = 0; m < 1 + static_cast<int>(rng() % 4); ++m) {
      s[rng() % s.size()] = static_cast<char>(rng());
    }
    if (rng() % 4 == 0) s.resize(rng() % s.size());
    FrameDecoder d;
    size_t off = 0;
    bool failed = false;
    while (off < s.size() && !failed) {
      size_t len = std::min<size_t>(1 + rng() % 9, s.size() - off);
      d.feed(std::string_view(s).substr(off, len));
      off += len;
      Frame f;
      for (;;) {
        auto r = d.next(f);
        if (!r.isOk()) {
          failed = true;
          ++errors;
          break;
        }
        if (!*r) break;
        EXPECT_LE(f.body.size(), s.size());
      }
    }
  }
  EXPECT_GT(errors, 0);  // the mutations did hit the checks
}

}  // namespace
}  // namespace stratus::runtime
