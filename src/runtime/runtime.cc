#include "runtime/runtime.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <utility>

#include "common/fs.h"

namespace stratus::runtime {

// Generated from python3/bootstrap.py and nodejs/bootstrap.js by cmake/embed_assets.cmake.
std::vector<std::pair<std::string_view, std::string_view>> embeddedAssets();

namespace {

constexpr std::string_view kCodeDir = "/code";
constexpr const char* kPython = "/usr/bin/python3";

// Compiles python3/stratus_runtime.py to bytecode with the interpreter the sandboxes run, so that
// no cold start compiles it (a few ms each). Best effort: without the .pyc the launcher compiles
// the source itself.
void compilePythonRuntime(const std::filesystem::path& dir) {
  const std::string src = (dir / "python3/stratus_runtime.py").string();
  const std::string pyc = (dir / "python3/stratus_runtime.pyc").string();
  const std::string shown = std::string(kAssetsMountPoint) + "/python3/stratus_runtime.py";
  const char* script =
      "import py_compile, sys\n"
      "py_compile.compile(sys.argv[1], cfile=sys.argv[2], dfile=sys.argv[3], doraise=True,\n"
      "    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n";
  const char* argv[] = {kPython,     "-S",        "-c",          script,
                        src.c_str(), pyc.c_str(), shown.c_str(), nullptr};
  const char* envp[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", nullptr};
  posix_spawn_file_actions_t actions;
  if (posix_spawn_file_actions_init(&actions) != 0) return;
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, kPython, &actions, nullptr, const_cast<char* const*>(argv),
                       const_cast<char* const*>(envp));
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    (void)::chmod(pyc.c_str(), 0644);
  } else {
    (void)::unlink(pyc.c_str());
  }
}

bool validEnvName(std::string_view name) {
  return !name.empty() && name.find('=') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

}  // namespace

bool isKnownRuntime(std::string_view name) {
  // "provided" (the AWS Lambda Runtime API) is not served by this version.
  return name == "python3" || name == "nodejs" || name == "custom";
}

std::string knownRuntimesList() { return "python3, nodejs, custom"; }

Kind kindOf(std::string_view runtime) {
  return runtime == "custom" ? Kind::kCustomHttp : Kind::kFrameProtocol;
}

Status installAssets(const std::filesystem::path& dir) {
  RETURN_IF_ERROR(makeDirs(dir, 0755).withContext("install runtime assets"));
  // Old bytecode must never run against newer sources: drop it first, recompile at the end.
  if (::unlink((dir / "python3/stratus_runtime.pyc").c_str()) != 0 && errno != ENOENT) {
    return Status::fromErrno(errno, "install runtime assets: remove old bytecode");
  }
  for (const auto& [name, content] : embeddedAssets()) {
    const std::filesystem::path target = dir / std::filesystem::path(name);
    RETURN_IF_ERROR(makeDirs(target.parent_path(), 0755).withContext("install runtime assets"));
    // Atomic replace: sandboxes that already run an older copy keep reading a whole file.
    RETURN_IF_ERROR(writeFileAtomic(target, content, 0644).withContext("install runtime assets"));
  }
  compilePythonRuntime(dir);
  return Status::ok();
}

std::vector<std::string> commandFor(const FunctionSpec& fn) {
  const std::string assets(kAssetsMountPoint);
  if (fn.runtime == "python3") {
    // -u: stdout/stderr unbuffered, so print() reaches the function log at once.
    // -S: skip site.py and its .pth hooks (they cost more than the whole bootstrap); the bootstrap
    //     appends the dist-packages directories itself.
    return {kPython, "-u", "-S", assets + "/python3/bootstrap.py"};
  }
  if (fn.runtime == "nodejs") {
    std::vector<std::string> argv = {"/usr/bin/node"};
    // As Lambda does: size V8's old space below the sandbox's memory limit, so the heap collects
    // garbage before the cgroup OOM-kills the instance. 85% leaves room for buffers and code.
    if (fn.memoryMb >= 128) {
      argv.push_back("--max-old-space-size=" + std::to_string(fn.memoryMb * 85 / 100));
    }
    argv.push_back(assets + "/nodejs/bootstrap.js");
    return argv;
  }
  if (fn.runtime == "custom") {
    std::vector<std::string> argv = fn.customRuntimeConfig.command;
    if (argv.empty()) argv.push_back(std::string(kCodeDir) + "/bootstrap");
    argv.insert(argv.end(), fn.customRuntimeConfig.args.begin(), fn.customRuntimeConfig.args.end());
    return argv;
  }
  return {std::string(kCodeDir) + "/bootstrap"};
}

std::vector<std::string> environmentFor(const FunctionSpec& fn) {
  std::map<std::string, std::string> env;
  // 1. Defaults the user may override (as on Lambda, where PATH, LANG, TZ... are not reserved).
  env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
  env["HOME"] = "/tmp";
  env["LANG"] = "C.UTF-8";
  env["TMPDIR"] = "/tmp";
  // 2. The function's own variables.
  for (const auto& [k, v] : fn.environmentVariables) {
    if (validEnvName(k)) env[k] = v;
  }
  // 3. Reserved variables: the platform's description of the function wins over user values of
  //    the same name, so handlers and SDKs can trust them.
  const std::string memory = std::to_string(fn.memoryMb);
  env["FC_FUNCTION_NAME"] = fn.name;
  env["FC_FUNCTION_HANDLER"] = fn.handler;
  env["FC_FUNCTION_MEMORY_SIZE"] = memory;
  env["FC_RUNTIME"] = fn.runtime;
  env["AWS_LAMBDA_FUNCTION_NAME"] = fn.name;
  env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = memory;
  env["AWS_LAMBDA_FUNCTION_VERSION"] = "$LATEST";
  env["AWS_LAMBDA_LOG_GROUP_NAME"] = "/aws/lambda/" + fn.name;
  env["_HANDLER"] = fn.handler;
  env["LAMBDA_TASK_ROOT"] = std::string(kCodeDir);
  env["PYTHONDONTWRITEBYTECODE"] = "1";  // /code is read-only
  env["PYTHONUNBUFFERED"] = "1";         // logs reach the worker as they are written
  if (kindOf(fn.runtime) == Kind::kFrameProtocol) {
    env["STRATUS_RUNTIME_SOCKET"] = std::string(kSocketPathInSandbox);
  } else {
    const std::string port = std::to_string(fn.customRuntimeConfig.port);
    env["FC_CUSTOM_LISTEN_PORT"] = port;
    env["FC_SERVER_PORT"] = port;
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

}  // namespace stratus::runtime
