// Gateway: the front door. Wraps HttpServer, gives every request an x-fc-request-id, answers
// GET /healthz (no key) and GET /metrics (Prometheus text), authenticates through the Api and
// passes the request on. Later issues add per-tenant rate limits and admission control here.
// Thread-safety: as HttpServer.
#pragma once

#include <memory>

#include "api/api.h"
#include "gateway/http_server.h"

namespace stratus {

class Gateway {
 public:
  Gateway(Api& api, HttpServerOptions options);
  ~Gateway();
  Status start();
  uint16_t port() const;
  void every(Duration period, std::function<void()> fn);
  void stop(Duration grace = std::chrono::seconds(5));

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stratus
