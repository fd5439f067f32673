#include "api/validation.h"

#include <gtest/gtest.h>

#include "common/base64.h"

namespace stratus::validation {
namespace {

json::object obj(std::string_view text) {
  auto v = parseBodyObject(text);
  EXPECT_TRUE(v.isOk()) << v.status().toString();
  return v.isOk() ? *v : json::object{};
}

// A minimal valid python3 create body with one field replaced/added.
json::object body(std::string_view extraField = {}) {
  std::string text = R"({"functionName":"hello","runtime":"python3","handler":"index.handler")";
  if (!extraField.empty()) {
    text += ",";
    text += extraField;
  }
  text += "}";
  return obj(text);
}

Status createStatus(std::string_view extraField) {
  return parseCreateSpec(body(extraField)).status();
}

void expectInvalid(std::string_view extraField, std::string_view messagePart) {
  Status s = createStatus(extraField);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << extraField << " -> " << s.toString();
  EXPECT_NE(s.message().find(messagePart), std::string::npos)
      << extraField << " -> " << s.message();
}

TEST(ValidationTest, DefaultsAreApplied) {
  auto spec = parseCreateSpec(body());
  ASSERT_TRUE(spec.isOk()) << spec.status().toString();
  EXPECT_EQ(spec->name, "hello");
  EXPECT_EQ(spec->runtime, "python3");
  EXPECT_EQ(spec->handler, "index.handler");
  EXPECT_EQ(spec->memoryMb, 128);
  EXPECT_EQ(spec->timeoutSec, 3);
  EXPECT_EQ(spec->instanceConcurrency, 1);
  EXPECT_EQ(spec->maxInstances, 100);
  EXPECT_EQ(spec->initializationTimeoutSec, 3);
  EXPECT_EQ(spec->customRuntimeConfig.port, 9000);
  EXPECT_TRUE(spec->environmentVariables.empty());
}

TEST(ValidationTest, EveryFieldIsRead) {
  auto spec = parseCreateSpec(obj(R"({
    "functionName": "_my-fn_2", "runtime": "custom", "handler": "anything",
    "memorySize": 3072, "timeout": 900, "instanceConcurrency": 200, "maxInstances": 1000,
    "environmentVariables": {"DB_HOST": "x", "_a1": ""},
    "description": "hi", "initializer": "init", "initializationTimeout": 300,
    "customRuntimeConfig": {"command": ["python3", "app.py"], "args": ["-v"], "port": 8080},
    "internetAccess": true, "vpcConfig": {"vpcId": "ignored"}, "unknownField": [1, 2]
  })"));
  ASSERT_TRUE(spec.isOk()) << spec.status().toString();
  EXPECT_EQ(spec->name, "_my-fn_2");
  EXPECT_EQ(spec->memoryMb, 3072);
  EXPECT_EQ(spec->timeoutSec, 900);
  EXPECT_EQ(spec->instanceConcurrency, 200);
  EXPECT_EQ(spec->maxInstances, 1000);
  EXPECT_EQ(spec->environmentVariables.at("DB_HOST"), "x");
  EXPECT_EQ(spec->environmentVariables.at("_a1"), "");
  EXPECT_EQ(spec->description, "hi");
  EXPECT_EQ(spec->initializer, "init");
  EXPECT_EQ(spec->initializationTimeoutSec, 300);
  EXPECT_EQ(spec->customRuntimeConfig.command, (std::vector<std::string>{"python3", "app.py"}));
  EXPECT_EQ(spec->customRuntimeConfig.args, (std::vector<std::string>{"-v"}));
  EXPECT_EQ(spec->customRuntimeConfig.port, 8080);
}

TEST(ValidationTest, MalformedBodies) {
  EXPECT_EQ(parseBodyObject("{").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parseBodyObject("").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parseBodyObject("[1,2]").status().code(), Code::kInvalidArgument);
  EXPECT_NE(parseBodyObject("\"str\"").status().message().find("JSON object"), std::string::npos);
}

TEST(ValidationTest, FunctionName) {
  EXPECT_TRUE(isValidFunctionName("a"));
  EXPECT_TRUE(isValidFunctionName("_"));
  EXPECT_TRUE(isValidFunctionName("Hello_World-2"));
  EXPECT_TRUE(isValidFunctionName(std::string(64, 'a')));
  EXPECT_FALSE(isValidFunctionName(std::string(65, 'a')));
  EXPECT_FALSE(isValidFunctionName(""));
  EXPECT_FALSE(isValidFunctionName("1abc"));
  EXPECT_FALSE(isValidFunctionName("-abc"));
  EXPECT_FALSE(isValidFunctionName("a.b"));
  EXPECT_FALSE(isValidFunctionName("a/b"));
  EXPECT_FALSE(isValidFunctionName("a b"));
  EXPECT_FALSE(isValidFunctionName("caf\xc3\xa9"));
  expectInvalid(R"("functionName":"1bad")", "functionName");
  Status missing = parseCreateSpec(obj(R"({"runtime":"python3","handler":"a.b"})")).status();
  EXPECT_EQ(missing.code(), Code::kInvalidArgument);
  EXPECT_NE(missing.message().find("functionName is required"), std::string::npos);
}

TEST(ValidationTest, Runtime) {
  Status s = createStatus(R"("runtime":"cobol")");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("cobol"), std::string::npos) << s.message();
  // The error lists the known runtimes.
  EXPECT_NE(s.message().find("python3"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("nodejs"), std::string::npos) << s.message();
  Status missing = parseCreateSpec(obj(R"({"functionName":"f","handler":"a.b"})")).status();
  EXPECT_NE(missing.message().find("runtime is required"), std::string::npos);
  expectInvalid(R"("runtime":3)", "runtime must be a string");
  for (const char* rt : {"nodejs", "custom"}) {
    auto ok = parseCreateSpec(obj(
        std::string(R"({"functionName":"f","handler":"index.handler","runtime":")") + rt + "\"}"));
    EXPECT_TRUE(ok.isOk()) << rt << ": " << ok.status().toString();
  }
}

TEST(ValidationTest, Handler) {
  EXPECT_TRUE(isValidHandler("index.handler"));
  EXPECT_TRUE(isValidHandler("src/app.main"));
  EXPECT_TRUE(isValidHandler("pkg/sub/mod.fn_2"));
  EXPECT_TRUE(isValidHandler("index.$h"));
  EXPECT_FALSE(isValidHandler("index"));
  EXPECT_FALSE(isValidHandler(".handler"));
  EXPECT_FALSE(isValidHandler("index."));
  EXPECT_FALSE(isValidHandler("/abs/index.handler"));
  EXPECT_FALSE(isValidHandler("../index.handler"));
  EXPECT_FALSE(isValidHandler("a/../../index.handler"));
  EXPECT_FALSE(isValidHandler("a//index.handler"));
  EXPECT_FALSE(isValidHandler("index.hand-ler"));
  EXPECT_FALSE(isValidHandler("in dex.handler"));
  EXPECT_FALSE(isValidHandler(std::string(200, 'a') + ".h"));

  Status missing = parseCreateSpec(obj(R"({"functionName":"f","runtime":"nodejs"})")).status();
  EXPECT_EQ(missing.code(), Code::kInvalidArgument);
  EXPECT_NE(missing.message().find("handler is required"), std::string::npos);
  expectInvalid(R"("handler":"../x.y")", "handler");
  // custom needs no handler.
  EXPECT_TRUE(parseCreateSpec(obj(R"({"functionName":"f","runtime":"custom"})")).isOk());
  // The initializer has the handler's shape for built-in runtimes.
  expectInvalid(R"("initializer":"noDot")", "initializer");
}

TEST(ValidationTest, MemorySize) {
  for (const char* bad : {"100", "129", "3200", "0", "-128", "3073", "99999999999"}) {
    expectInvalid(std::string(R"("memorySize":)") + bad, "memorySize");
  }
  expectInvalid(R"("memorySize":"128")", "memorySize must be an integer");
  expectInvalid(R"("memorySize":128.5)", "memorySize must be an integer");
  for (int good : {128, 256, 1536, 3072}) {
    auto s = parseCreateSpec(body("\"memorySize\":" + std::to_string(good)));
    ASSERT_TRUE(s.isOk()) << good;
    EXPECT_EQ(s->memoryMb, good);
  }
}

TEST(ValidationTest, NumericRanges) {
  expectInvalid(R"("timeout":0)", "timeout must be between 1 and 900");
  expectInvalid(R"("timeout":901)", "timeout");
  expectInvalid(R"("instanceConcurrency":0)", "instanceConcurrency must be between 1 and 200");
  expectInvalid(R"("instanceConcurrency":201)", "instanceConcurrency");
  expectInvalid(R"("maxInstances":0)", "maxInstances");
  expectInvalid(R"("maxInstances":1001)", "maxInstances");
  expectInvalid(R"("initializationTimeout":0)", "initializationTimeout");
  expectInvalid(R"("initializationTimeout":301)", "initializationTimeout");
  EXPECT_TRUE(parseCreateSpec(body(R"("timeout":1)")).isOk());
  EXPECT_TRUE(parseCreateSpec(body(R"("timeout":900)")).isOk());
  EXPECT_TRUE(parseCreateSpec(body(R"("instanceConcurrency":1)")).isOk());
  // null means "not given".
  auto s = parseCreateSpec(body(R"("timeout":null)"));
  ASSERT_TRUE(s.isOk());
  EXPECT_EQ(s->timeoutSec, 3);
}

TEST(ValidationTest, EnvironmentVariables) {
  expectInvalid(R"("environmentVariables":[])", "environmentVariables must be an object");
  expectInvalid(R"("environmentVariables":{"A":1})", "environmentVariables.A must be a string");
  expectInvalid(R"("environmentVariables":{"1A":"x"})", "1A");
  expectInvalid(R"("environmentVariables":{"A-B":"x"})", "A-B");
  expectInvalid(R"("environmentVariables":{"":"x"})", "name");
  expectInvalid(R"("environmentVariables":{"FC_FUNC":"x"})", "reserved");
  expectInvalid(R"("environmentVariables":{"AWS_LAMBDA_RUNTIME_API":"x"})", "reserved");
  expectInvalid(R"("environmentVariables":{"STRATUS_X":"x"})", "reserved");
  expectInvalid(R"("environmentVariables":{"_HANDLER":"x"})", "reserved");
  expectInvalid(R"("environmentVariables":{"A":"a\u0000b"})", "NUL");
  // AWS_REGION and friends are the user's to set (SDKs read them).
  EXPECT_TRUE(parseCreateSpec(body(R"("environmentVariables":{"AWS_REGION":"x"})")).isOk());
  std::string big(kMaxEnvironmentBytes, 'v');
  expectInvalid("\"environmentVariables\":{\"BIG\":\"" + big + "\"}", "bytes");
}

TEST(ValidationTest, DescriptionAndCustomRuntimeConfig) {
  EXPECT_TRUE(parseCreateSpec(body("\"description\":\"" + std::string(256, 'd') + "\"")).isOk());
  // 256 characters, not bytes: multi-byte UTF-8 is fine.
  std::string e256;
  for (int i = 0; i < 256; ++i) e256 += "\xc3\xa9";
  EXPECT_TRUE(parseCreateSpec(body("\"description\":\"" + e256 + "\"")).isOk());
  expectInvalid("\"description\":\"" + std::string(257, 'd') + "\"", "description");

  expectInvalid(R"("customRuntimeConfig":[])", "customRuntimeConfig must be an object");
  expectInvalid(R"("customRuntimeConfig":{"command":"x"})", "command must be an array");
  expectInvalid(R"("customRuntimeConfig":{"command":[1]})", "command must be an array");
  expectInvalid(R"("customRuntimeConfig":{"command":[""]})", "must not be empty");
  expectInvalid(R"("customRuntimeConfig":{"args":[1]})", "args");
  expectInvalid(R"("customRuntimeConfig":{"port":0})", "port");
  expectInvalid(R"("customRuntimeConfig":{"port":65536})", "port");
  expectInvalid(R"("customRuntimeConfig":{"port":"80"})", "port must be an integer");
}

TEST(ValidationTest, UpdateIsPartialAndValidatesTheMergedResult) {
  auto current = parseCreateSpec(body(R"("memorySize":512,"environmentVariables":{"A":"1"})"));
  ASSERT_TRUE(current.isOk());
  current->revision = 5;
  current->codeSha256 = "abc";

  auto u = applyUpdate(obj(R"({"timeout":60})"), *current);
  ASSERT_TRUE(u.isOk()) << u.status().toString();
  EXPECT_EQ(u->timeoutSec, 60);
  EXPECT_EQ(u->memoryMb, 512);  // untouched
  EXPECT_EQ(u->environmentVariables.at("A"), "1");
  EXPECT_EQ(u->codeSha256, "abc");
  EXPECT_EQ(u->revision, 5);  // the caller bumps

  // An empty update is valid.
  EXPECT_TRUE(applyUpdate(obj("{}"), *current).isOk());
  // Same name is fine, a different one is a rename.
  EXPECT_TRUE(applyUpdate(obj(R"({"functionName":"hello"})"), *current).isOk());
  EXPECT_EQ(applyUpdate(obj(R"({"functionName":"other"})"), *current).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(applyUpdate(obj(R"({"memorySize":129})"), *current).status().code(),
            Code::kInvalidArgument);
  // Switching to a built-in runtime with a handler that no longer fits is caught on the merge.
  auto custom = parseCreateSpec(obj(R"({"functionName":"c","runtime":"custom"})"));
  ASSERT_TRUE(custom.isOk());
  EXPECT_EQ(applyUpdate(obj(R"({"runtime":"python3"})"), *custom).status().code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(
      applyUpdate(obj(R"({"runtime":"python3","handler":"main.handler"})"), *custom).isOk());
  // environmentVariables is replaced whole.
  auto env = applyUpdate(obj(R"({"environmentVariables":{"B":"2"}})"), *current);
  ASSERT_TRUE(env.isOk());
  EXPECT_EQ(env->environmentVariables.size(), 1u);
  EXPECT_EQ(env->environmentVariables.at("B"), "2");
}

TEST(ValidationTest, DecodeCode) {
  auto none = decodeCode(obj("{}"), 100);
  ASSERT_TRUE(none.isOk());
  EXPECT_FALSE(none->has_value());

  auto ok = decodeCode(obj("{\"code\":{\"zipFile\":\"" + base64Encode("PK-bytes") + "\"}}"), 100);
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  ASSERT_TRUE(ok->has_value());
  EXPECT_EQ(**ok, "PK-bytes");

  EXPECT_EQ(decodeCode(obj(R"({"code":"x"})"), 100).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(decodeCode(obj(R"({"code":{}})"), 100).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(decodeCode(obj(R"({"code":{"zipFile":5}})"), 100).status().code(),
            Code::kInvalidArgument);
  Status bad = decodeCode(obj(R"({"code":{"zipFile":"!!not base64!!"}})"), 100).status();
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("base64"), std::string::npos);
  EXPECT_EQ(decodeCode(obj(R"({"code":{"zipFile":""}})"), 100).status().code(),
            Code::kInvalidArgument);

  // Exactly at the limit passes, one byte over is 413.
  std::string at(100, 'z');
  EXPECT_TRUE(decodeCode(obj("{\"code\":{\"zipFile\":\"" + base64Encode(at) + "\"}}"), 100).isOk());
  Status over =
      decodeCode(obj("{\"code\":{\"zipFile\":\"" + base64Encode(at + "z") + "\"}}"), 100).status();
  EXPECT_EQ(over.code(), Code::kPayloadTooLarge);
  // Far over the limit is refused before decoding (even if it is not base64 at all).
  Status huge =
      decodeCode(obj("{\"code\":{\"zipFile\":\"" + std::string(100000, '#') + "\"}}"), 100)
          .status();
  EXPECT_EQ(huge.code(), Code::kPayloadTooLarge);
}

}  // namespace
}  // namespace stratus::validation
