// The CLI's client side: `stratus deploy | invoke | ls | get | rm | tenant ...` talk to a running
// Stratus over its REST API (DESIGN.md section 3), and the small config file that remembers
// where that server is and which key to use.
//
// Endpoint and key resolution, highest first: --endpoint/--key flags, $STRATUS_ENDPOINT /
// $STRATUS_KEY, the config file ($STRATUS_CONFIG, else $HOME/.config/stratus/config.json),
// which `stratus up` writes on start. Every command prints `error: <code>: <message>` and exits 1
// on failure; --json prints the API's JSON unchanged.
// Functions here are stateless apart from the config file; not meant for concurrent use.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace stratus {

struct ClientConfig {
  std::string endpoint;
  std::string key;
};

// $STRATUS_CONFIG, else $HOME/.config/stratus/config.json.
std::filesystem::path clientConfigPath();
// Writes the config file (0600; directories created 0700).
Status writeClientConfig(const ClientConfig& config);
// flags > env > file; fields may stay empty (an empty endpoint defaults to
// http://127.0.0.1:9000). A config file that exists but cannot be parsed is an error.
Result<ClientConfig> resolveClientConfig(std::string flagEndpoint, std::string flagKey);

// What `stratus deploy` was asked for; unset optionals are left to the server (create) or to the
// function's current value (update).
struct DeployOptions {
  std::string name;
  std::string runtime;
  std::optional<std::string> handler;
  std::optional<int> memoryMb;
  std::optional<int> timeoutSec;
  std::optional<int> concurrency;
  std::optional<int> maxInstances;
  std::optional<std::map<std::string, std::string>> env;
  std::optional<std::string> description;
};

// The zip to upload: a .zip file as is, or a directory zipped in memory.
Result<std::string> loadCodePackage(const std::filesystem::path& path);
// The JSON body of the create (POST) or update (PUT) request. Create fills in the handler
// default (index.handler) for python3 and nodejs.
json::object deployRequestBody(const DeployOptions& options, std::string_view zip, bool create);
// "K=V" -> {K, V}; an entry without '=' or with an empty key is an error.
Result<std::map<std::string, std::string>> parseEnvAssignments(
    const std::vector<std::string>& assignments);

// Registers deploy, invoke, ls, get, rm and tenant (create | ls | set | rm) on app.
void addClientCommands(CLI::App& app);

}  // namespace stratus
