// libFuzzer target: raw bytes -> the server's HTTP parser and conversion (parseHttpRequest, the
// same code a connection runs) -> authentication -> the API's router and handlers, against a
// real SqliteStore and CodeCache in a temp dir and an invoker that answers at once. Inputs that
// carry "Authorization: Bearer fuzz-admin" or "... fuzz-tenant" reach every route. Nothing may
// crash, hang, or leave a request without exactly one response.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string_view>

#include "api/api.h"
#include "common/ids.h"
#include "gateway/http_server.h"
#include "store/sqlite_store.h"

namespace {

using namespace stratus;

class ImmediateInvoker final : public Invoker {
 public:
  void invoke(const FunctionSpec&, InvokeRequest req, InvokeCallback done) override {
    InvokeResult r;
    r.body = req.payload;
    done(std::move(r));
  }
  void functionChanged(const FunctionSpec&) override {}
  void functionDeleted(const FunctionSpec&) override {}
  void shutdown() override {}
};

struct World {
  World() {
    char tmpl[] = "/tmp/stratus-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    dir = tmpl;
    auto s = SqliteStore::open(dir / "meta.db");
    if (!s.isOk()) std::abort();
    store = std::move(s).value();
    if (!store->putApiKey(ApiKey{sha256Hex("fuzz-admin"), "default", true, ""}).isOk() ||
        !store->putApiKey(ApiKey{sha256Hex("fuzz-tenant"), "t", false, ""}).isOk()) {
      std::abort();
    }
    code = std::make_unique<CodeCache>(dir / "code");
    ApiOptions o;
    o.startAsyncDispatcher = false;
    o.zipLimits.maxZippedBytes = 1 << 20;
    o.zipLimits.maxUnpackedBytes = 4 << 20;
    api = std::make_unique<Api>(*store, *code, invoker, o);
    options.maxHeaderBytes = 16 << 10;
    options.maxBodyBytes = 1 << 20;
  }
  ~World() {
    api.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<CodeCache> code;
  ImmediateInvoker invoker;
  std::unique_ptr<Api> api;
  HttpServerOptions options;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // lives for the whole run (libFuzzer never returns)
  auto req =
      parseHttpRequest(std::string_view(reinterpret_cast<const char*>(data), size), world->options);
  if (!req.isOk()) return 0;
  auto caller = world->api->identify(*req);
  if (!caller.isOk()) return 0;
  int responses = 0;
  int status = 0;
  world->api->handle(*caller, std::move(*req), [&](HttpResponse r) {
    ++responses;
    status = r.status;
  });
  // The immediate invoker answers inline, so every request has been answered exactly once.
  if (responses != 1 || status < 100 || status > 599) std::abort();
  return 0;
}
