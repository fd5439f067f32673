// Gateway: the front door. Wraps HttpServer (connection limits, header/body limits, slowloris
// timeouts), gives every request an x-fc-request-id, answers GET /healthz (no key, answered on
// the I/O thread without touching the Api, so it stays fast under overload) and GET /metrics
// (Prometheus text, the Api's front-door counters included), authenticates through the Api and
// passes the request on; the Api applies rate limits, admission and breakers.
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
