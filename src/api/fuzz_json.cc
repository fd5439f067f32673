// libFuzzer target: every JSON body the API decodes -- function create/update specs (and the
// base64 code field), async invoke configs, tenant quotas, stored function JSON. None may crash,
// hang or accept a spec that validateSpec refuses.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/async_dispatcher.h"
#include "api/validation.h"
#include "store/store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stratus;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto body = validation::parseBodyObject(text); body.isOk()) {
    if (auto spec = validation::parseCreateSpec(*body); spec.isOk()) {
      if (!validation::validateSpec(*spec).isOk()) std::abort();  // create must validate
      auto round = functionFromStorageJson(functionToStorageJson(*spec));
      if (!round.isOk() || round->name != spec->name) std::abort();
    }
    FunctionSpec base;
    base.name = "base";
    base.runtime = "python3";
    base.handler = "index.handler";
    if (auto merged = validation::applyUpdate(*body, base); merged.isOk()) {
      if (!validation::validateSpec(*merged).isOk()) std::abort();
    }
    (void)validation::decodeCode(*body, 1 << 20);
  }
  if (auto cfg = parseAsyncInvokeConfig(text); cfg.isOk()) {
    if (cfg->maxAsyncRetryAttempts < 0 || cfg->maxAsyncRetryAttempts > 8) std::abort();
    auto again = parseAsyncInvokeConfig(json::serialize(asyncInvokeConfigToJson(*cfg)));
    if (!again.isOk() || again->onFailure != cfg->onFailure) std::abort();
  }
  if (auto q = tenantQuotaFromJson(text); q.isOk()) {
    auto again = tenantQuotaFromJson(tenantQuotaToJson(*q));
    if (!again.isOk() || again->maxFunctions != q->maxFunctions) std::abort();
  }
  (void)functionFromStorageJson(text);
  return 0;
}
