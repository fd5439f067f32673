// stratus_fork.node: the native half of the nodejs template (zygote.js, issue 4). A node process
// cannot receive SCM_RIGHTS, setns, drop capabilities or install a seccomp filter from JS, and
// everything between fork() and the runtime's first line of JS must run without the event loop,
// so it is done here, in C, in one call: spawn() forks the template's child chain and returns
// only in the template (with the answer for the worker) and in the new runtime (with {child}).
//
// Exports: takeOverWorkerTasks() (first); recv(fd) -> {msg, fds} | null (EOF); send(fd, string);
// spawn(req) -> {pid} | {error} | {child: true, pid}; exit(code) (_exit: a forked node must never
// run node's own exit path, which joins V8 platform threads that exist only in the template);
// getpid(); random32(); tieToParent(); close(fd).
//
// No node headers are needed: the handful of N-API functions used are declared below (N-API is
// a stable C ABI, exported by the node binary), plus libuv's uv_loop_fork. The module registers
// through the napi_register_module_v1 symbol that node looks up after dlopen.
//
// The process chain, as in python3/zygote.py (the protocol, the order of namespace joins and the
// credentials given are the same; see there and src/sandbox/zygote.h):
//   T (template) --fork--> C: joins the sandbox's cgroups and pid namespace
//   C --fork--> G1 (in the sandbox's pid namespace) --fork--> G2, G1 exits: G2 is adopted by the
//   sandbox's init, reports its pid to C with SCM_CREDENTIALS, confines itself and returns to JS.
// C waits for the error pipe's EOF (G2 set up, or G1/G2 gone) and only then reads the credential
// datagram without blocking: a datagram socket never sees EOF, so a G2 that died before sending
// (a fork refused by pids.max) must not leave C (and the template) waiting forever.
//
// File descriptors: the runtime must keep none of the template's or the worker's, yet libuv's
// own (the event loop's epoll/eventfd/signal pipe, recreated by uv_loop_fork, and the global
// signal lock pipe, recreated by libuv's pthread_atfork handler in every fork child) must stay
// valid. Both recreations close the *old fd numbers* first, so those numbers must not hold
// anything of value by then: C replaces every inherited fd it does not need by a /dev/null
// placeholder; G2 runs uv_loop_fork (closing placeholders, creating fresh fds) and then closes
// every placeholder and every fd it was handed. What stays is what libuv made in G2.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern "C" {

// ---- the N-API subset (js_native_api.h, node_api.h; stable ABI) ---------------------------------
typedef struct napi_env__* napi_env;
typedef struct napi_value__* napi_value;
typedef struct napi_callback_info__* napi_callback_info;
typedef int napi_status;  // napi_ok == 0
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
struct uv_loop_s;

napi_status napi_create_function(napi_env, const char*, size_t, napi_callback, void*, napi_value*);
napi_status napi_set_named_property(napi_env, napi_value, const char*, napi_value);
napi_status napi_get_named_property(napi_env, napi_value, const char*, napi_value*);
napi_status napi_get_cb_info(napi_env, napi_callback_info, size_t*, napi_value*, napi_value*,
                             void**);
napi_status napi_get_value_int32(napi_env, napi_value, int32_t*);
napi_status napi_get_value_string_utf8(napi_env, napi_value, char*, size_t, size_t*);
napi_status napi_get_array_length(napi_env, napi_value, uint32_t*);
napi_status napi_get_element(napi_env, napi_value, uint32_t, napi_value*);
napi_status napi_set_element(napi_env, napi_value, uint32_t, napi_value);
napi_status napi_create_string_utf8(napi_env, const char*, size_t, napi_value*);
napi_status napi_create_int32(napi_env, int32_t, napi_value*);
napi_status napi_create_object(napi_env, napi_value*);
napi_status napi_create_array_with_length(napi_env, size_t, napi_value*);
napi_status napi_get_boolean(napi_env, bool, napi_value*);
napi_status napi_get_null(napi_env, napi_value*);
napi_status napi_throw_error(napi_env, const char*, const char*);
napi_status napi_get_uv_event_loop(napi_env, struct uv_loop_s**);
int uv_loop_fork(struct uv_loop_s*);

napi_value napi_register_module_v1(napi_env env, napi_value exports);
int32_t node_api_module_get_api_version_v1(void);
}

namespace {

constexpr int kMaxFds = 64;        // SCM_RIGHTS fds per request (stdout, stderr, 7 namespaces)
constexpr int kMaxMsg = 64 << 10;  // a request
constexpr int kMaxStrings = 1024;  // env entries, cgroup files
constexpr size_t kErrLen = 512;

// ---- small helpers (usable after fork: no allocation unless noted) ------------------------------

struct Err {
  char text[kErrLen];
};

void setErr(Err* e, const char* what) {
  snprintf(e->text, sizeof e->text, "%.400s: %.100s", what, strerror(errno));
}

bool writeAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Dies with the parent (SIGKILL); false if the parent is already gone. A parent outside our pid
// namespace (C, seen from G1) has pid 0 here; a dead one would have made us init's.
bool tieToParent(pid_t parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return false;
  const pid_t now = getppid();
  return now == parent || now == 0;
}

// ---- the request, parsed from JS before fork ----------------------------------------------------

struct Request {
  int fds[kMaxFds];
  int nfds = 0;
  char* nsTypes[16];
  int nns = 0;
  char* cgroupFiles[kMaxStrings];
  int ncg = 0;
  char* env[kMaxStrings + 1];
  int nenv = 0;
  char* cwd = nullptr;
  char* filterHex = nullptr;
  long uid = -1, gid = -1;
  long nofile = 0;
  ~Request() {
    for (int i = 0; i < nns; ++i) free(nsTypes[i]);
    for (int i = 0; i < ncg; ++i) free(cgroupFiles[i]);
    for (int i = 0; i < nenv; ++i) free(env[i]);
    free(cwd);
    free(filterHex);
  }
};

char* getString(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != 0) return nullptr;
  char* s = static_cast<char*>(malloc(len + 1));
  if (!s) return nullptr;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != 0) {
    free(s);
    return nullptr;
  }
  s[len] = '\0';
  if (strlen(s) != len) {  // an embedded NUL would silently truncate a path or a variable
    free(s);
    return nullptr;
  }
  return s;
}

char* getStringProp(napi_env env, napi_value obj, const char* name) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != 0) return nullptr;
  return getString(env, v);
}

// Reads obj[name], an array of strings, into out (at most max). -1 on a malformed value.
int getStringArray(napi_env env, napi_value obj, const char* name, char** out, int max) {
  napi_value arr;
  uint32_t n = 0;
  if (napi_get_named_property(env, obj, name, &arr) != 0) return -1;
  if (napi_get_array_length(env, arr, &n) != 0 || n > static_cast<uint32_t>(max)) return -1;
  for (uint32_t i = 0; i < n; ++i) {
    napi_value v;
    if (napi_get_element(env, arr, i, &v) != 0) return -1;
    out[i] = getString(env, v);
    if (!out[i]) {
      for (uint32_t j = 0; j < i; ++j) free(out[j]);
      return -1;
    }
  }
  return static_cast<int>(n);
}

bool parseLong(const char* s, long* out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

const char* parseRequest(napi_env env, napi_value obj, Request* r) {
  napi_value fdsArr;
  uint32_t n = 0;
  if (napi_get_named_property(env, obj, "fds", &fdsArr) != 0 ||
      napi_get_array_length(env, fdsArr, &n) != 0 || n < 2 || n > kMaxFds) {
    return "request needs fds [stdout, stderr, namespaces...]";
  }
  for (uint32_t i = 0; i < n; ++i) {
    napi_value v;
    int32_t fd = -1;
    if (napi_get_element(env, fdsArr, i, &v) != 0 || napi_get_value_int32(env, v, &fd) != 0 ||
        fd < 0) {
      return "bad fd in request";
    }
    r->fds[r->nfds++] = fd;
  }
  int k = getStringArray(env, obj, "nsTypes", r->nsTypes, 16);
  if (k < 0) return "bad nsTypes";
  r->nns = k;
  if (r->nns != r->nfds - 2) return "nsTypes and namespace fds differ in number";
  for (int i = 0; i < r->nns; ++i) {
    const char* t = r->nsTypes[i];
    if (strcmp(t, "user") && strcmp(t, "mnt") && strcmp(t, "pid") && strcmp(t, "net") &&
        strcmp(t, "uts") && strcmp(t, "ipc") && strcmp(t, "cgroup")) {
      return "unknown namespace type";
    }
  }
  k = getStringArray(env, obj, "cgroupFiles", r->cgroupFiles, kMaxStrings);
  if (k < 0) return "bad cgroupFiles";
  r->ncg = k;
  k = getStringArray(env, obj, "env", r->env, kMaxStrings);
  if (k < 0) return "bad env";
  r->nenv = k;
  r->env[r->nenv] = nullptr;
  char* s = getStringProp(env, obj, "uid");
  bool ok = parseLong(s, &r->uid);
  free(s);
  if (!ok || r->uid < 0) return "bad uid";
  s = getStringProp(env, obj, "gid");
  ok = parseLong(s, &r->gid);
  free(s);
  if (!ok || r->gid < 0) return "bad gid";
  s = getStringProp(env, obj, "nofile");
  ok = parseLong(s, &r->nofile);
  free(s);
  if (!ok) return "bad nofile";
  r->cwd = getStringProp(env, obj, "cwd");
  if (!r->cwd) return "bad cwd";
  r->filterHex = getStringProp(env, obj, "filterHex");
  if (!r->filterHex) return "bad filterHex";
  if (strlen(r->filterHex) % 16 != 0) return "filterHex is not whole BPF instructions";
  return nullptr;
}

int nsFd(const Request& r, const char* type) {
  for (int i = 0; i < r.nns; ++i) {
    if (strcmp(r.nsTypes[i], type) == 0) return r.fds[2 + i];
  }
  return -1;
}

bool isHandedFd(const Request& r, int fd) {
  for (int i = 0; i < r.nfds; ++i) {
    if (r.fds[i] == fd) return true;
  }
  return false;
}

// ---- fd placeholders (see the file comment) -----------------------------------------------------

struct DevNull {
  dev_t rdev = 0;
};

bool isPlaceholder(int fd, const DevNull& dn) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == dn.rdev;
}

// In C: every fd >= 3 but the keepers becomes /dev/null. Returns the highest fd seen, or -1.
int replaceWithPlaceholders(const Request& r, int keep, Err* e) {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    setErr(e, "open /dev/null");
    return -1;
  }
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    setErr(e, "open /proc/self/fd");
    return -1;
  }
  // Collect first: replacing while reading the directory is fine for the kernel, but keep it
  // simple to reason about.
  static int found[65536];
  int nfound = 0, maxFd = 2;
  char buf[8192];
  for (;;) {
    long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
    if (n < 0) {
      setErr(e, "read /proc/self/fd");
      return -1;
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      struct Dirent {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      };
      auto* d = reinterpret_cast<Dirent*>(buf + off);
      off += d->reclen;
      long fd;
      if (!parseLong(d->name, &fd)) continue;
      if (fd > maxFd) maxFd = static_cast<int>(fd);
      if (nfound < static_cast<int>(sizeof found / sizeof found[0])) {
        found[nfound++] = static_cast<int>(fd);
      } else {
        errno = EMFILE;
        setErr(e, "too many inherited fds");
        return -1;
      }
    }
  }
  for (int i = 0; i < nfound; ++i) {
    int fd = found[i];
    if (fd < 3 || fd == keep || fd == dir || fd == devnull || isHandedFd(r, fd)) continue;
    if (dup3(devnull, fd, O_CLOEXEC) < 0) {
      setErr(e, "replace an inherited fd");
      return -1;
    }
  }
  close(dir);
  close(devnull);
  return maxFd;
}

// ---- G2: becomes what the sandbox's init makes of a command (init_main.cc) ----------------------

int hexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool becomeSandboxed(const Request& r, int keep, int maxFd, struct uv_loop_s* loop, Err* e) {
  // Every namespace but the user namespace, while we are still the host's root.
  static const char* const kOrder[] = {"cgroup", "ipc", "uts", "net", "mnt"};
  for (const char* t : kOrder) {
    int fd = nsFd(r, t);
    if (fd >= 0 && setns(fd, 0) != 0) {
      char what[32];
      snprintf(what, sizeof what, "setns %s", t);
      setErr(e, what);
      return false;
    }
  }
  if (int fd = nsFd(r, "user"); fd >= 0) {
    if (setns(fd, 0) != 0) return setErr(e, "setns user"), false;
    // As init does after its unshare: become root of the namespace. Raw system calls: this
    // process has one thread, and glibc's set*id broadcast machinery is not needed.
    if (syscall(SYS_setgroups, 0, nullptr) != 0) return setErr(e, "setgroups"), false;
    if (syscall(SYS_setresgid, 0, 0, 0) != 0) return setErr(e, "setresgid 0"), false;
    if (syscall(SYS_setresuid, 0, 0, 0) != 0) return setErr(e, "setresuid 0"), false;
  }
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return setErr(e, "open /dev/null"), false;
  DevNull dn;
  {
    struct stat st;
    if (fstat(devnull, &st) != 0) return setErr(e, "stat /dev/null"), false;
    dn.rdev = st.st_rdev;
  }
  if (dup2(devnull, 0) < 0 || dup2(r.fds[0], 1) < 0 || dup2(r.fds[1], 2) < 0) {
    return setErr(e, "dup2 stdio"), false;
  }
  // libuv: a fresh epoll instance, async eventfd and signal pipe for this process (the old ones
  // are the template's, and their numbers hold placeholders by now).
  if (int rc = uv_loop_fork(loop); rc != 0) {
    errno = -rc;
    return setErr(e, "uv_loop_fork"), false;
  }
  // Nothing the worker handed over and nothing of the template survives; what libuv just made
  // does. Fds above maxFd + margin cannot exist: everything up to maxFd was occupied when C
  // enumerated, and fewer than 64 fds were made since.
  for (int fd = 3; fd <= maxFd + 64; ++fd) {
    if (fd == keep) continue;
    if (fd == devnull || isHandedFd(r, fd) || isPlaceholder(fd, dn)) close(fd);
  }
  // Drop the capability bounding set and the ambient set.
  for (int cap = 0; cap < 64; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      return setErr(e, "drop a capability"), false;
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return setErr(e, "clear ambient capabilities"), false;
  }
  struct rlimit zero = {0, 0};
  if (setrlimit(RLIMIT_CORE, &zero) != 0) return setErr(e, "RLIMIT_CORE"), false;
  if (r.nofile > 0) {
    struct rlimit cur;
    if (getrlimit(RLIMIT_NOFILE, &cur) != 0) return setErr(e, "getrlimit NOFILE"), false;
    rlim_t n = static_cast<rlim_t>(r.nofile);
    if (cur.rlim_max != RLIM_INFINITY && n > cur.rlim_max) n = cur.rlim_max;
    struct rlimit lim = {n, n};
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return setErr(e, "RLIMIT_NOFILE"), false;
  }
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return setErr(e, "setgroups"), false;
  if (syscall(SYS_setresgid, r.gid, r.gid, r.gid) != 0) return setErr(e, "setresgid"), false;
  if (syscall(SYS_setresuid, r.uid, r.uid, r.uid) != 0) return setErr(e, "setresuid"), false;
  // A command that execve()s after the uid change is dumpable again; the id change made us not.
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return setErr(e, "PR_SET_DUMPABLE"), false;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return setErr(e, "PR_SET_NO_NEW_PRIVS"), false;
  if (chdir(r.cwd[0] ? r.cwd : "/") != 0) return setErr(e, "chdir"), false;
  // The environment: exactly the request's. Copies that live as long as the process (environ
  // points into them).
  if (clearenv() != 0) return setErr(e, "clearenv"), false;
  for (int i = 0; i < r.nenv; ++i) {
    char* kv = strdup(r.env[i]);
    if (!kv || !strchr(kv, '=') || putenv(kv) != 0) {
      errno = EINVAL;
      return setErr(e, "environment entry"), false;
    }
  }
  const size_t hexLen = strlen(r.filterHex);
  if (hexLen > 0) {
    const size_t bytes = hexLen / 2;
    auto* prog = static_cast<unsigned char*>(malloc(bytes));
    if (!prog) return setErr(e, "seccomp filter"), false;
    for (size_t i = 0; i < bytes; ++i) {
      int hi = hexVal(r.filterHex[2 * i]), lo = hexVal(r.filterHex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        errno = EINVAL;
        return setErr(e, "seccomp filter hex"), false;
      }
      prog[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    struct sock_fprog fprog;
    fprog.len = static_cast<unsigned short>(bytes / 8);
    fprog.filter = reinterpret_cast<struct sock_filter*>(prog);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) {
      return setErr(e, "seccomp"), false;
    }
    free(prog);
  }
  return true;
}

// ---- V8's worker-thread tasks -------------------------------------------------------------------
//
// fork() keeps only the calling thread: node's platform worker threads exist in the template only.
// --single-threaded keeps V8 from relying on them, with one exception in V8 11.3 (node 20): every
// full GC posts a ParallelClearingJob (string table clearing) whose worker task nobody runs in
// a child. The job itself completes (the main thread joins it), but node counts the task as
// outstanding, and NodePlatform::DrainTasks -- at the end of the event loop and in every
// worker_threads Worker's teardown -- waits for that count to reach zero: forever (seen: a Worker
// that ends after a full GC never emits 'exit'). So tasks V8 hands to
// NodePlatform::CallOnWorkerThread / CallDelayedOnWorkerThread go to a thread of this addon
// instead: the two slots of NodePlatform's vtable (exported by node, like both methods) are
// pointed at the functions below, once, in the template, before it ever forks; node's own queue
// then stays empty, so no child inherits a count it cannot drain (even for a task the template
// had not run yet when it forked). Each child starts the addon's pool afresh (resetPoolAfterFork):
// the template's pending tasks stay the template's.

constexpr const char* kVtableSym = "_ZTVN4node12NodePlatformE";
constexpr const char* kCallSym =
    "_ZN4node12NodePlatform18CallOnWorkerThreadESt10unique_ptrIN2v84TaskESt14default_deleteIS3_EE";
constexpr const char* kDelayedSym =
    "_ZN4node12NodePlatform25CallDelayedOnWorkerThreadESt10unique_ptrIN2v84TaskESt14default_"
    "deleteIS3_EEd";
constexpr int kVtableScan = 128;

struct PlatformSlots {
  void** call = nullptr;     // vtable slot holding NodePlatform::CallOnWorkerThread
  void** delayed = nullptr;  // ... CallDelayedOnWorkerThread
};

// Finds the slots (in the template, at load time: a node whose layout differs is refused there).
const char* findPlatformSlots(PlatformSlots* out) {
  auto** vt = static_cast<void**>(dlsym(RTLD_DEFAULT, kVtableSym));
  void* call = dlsym(RTLD_DEFAULT, kCallSym);
  void* delayed = dlsym(RTLD_DEFAULT, kDelayedSym);
  if (!vt || !call || !delayed) return "node does not export NodePlatform's vtable and methods";
  for (int i = 0; i < kVtableScan; ++i) {
    if (vt[i] == call && !out->call) out->call = &vt[i];
    if (vt[i] == delayed && !out->delayed) out->delayed = &vt[i];
  }
  if (!out->call || !out->delayed) return "NodePlatform's vtable has no worker-thread slots";
  return nullptr;
}

PlatformSlots gSlots;
bool gTookOver = false;

struct PoolTask {
  void* task;    // a v8::Task*, owned
  timespec due;  // CLOCK_MONOTONIC
};

pthread_mutex_t gPoolMu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t gPoolCv;
PoolTask* gPool = nullptr;
size_t gPoolLen = 0, gPoolCap = 0;
bool gPoolThread = false;

// v8::Task: virtual ~Task() (complete, deleting), virtual void Run(): Itanium slots 0, 1, 2.
void runAndDeleteTask(void* task) {
  auto** vt = *static_cast<void***>(task);
  reinterpret_cast<void (*)(void*)>(vt[2])(task);
  reinterpret_cast<void (*)(void*)>(vt[1])(task);
}

bool before(const timespec& a, const timespec& b) {
  return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

void* poolMain(void*) {
  pthread_mutex_lock(&gPoolMu);
  for (;;) {
    size_t best = gPoolLen;
    for (size_t i = 0; i < gPoolLen; ++i) {
      if (best == gPoolLen || before(gPool[i].due, gPool[best].due)) best = i;
    }
    if (best == gPoolLen) {
      pthread_cond_wait(&gPoolCv, &gPoolMu);
      continue;
    }
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (before(now, gPool[best].due)) {
      pthread_cond_timedwait(&gPoolCv, &gPoolMu, &gPool[best].due);
      continue;
    }
    void* task = gPool[best].task;
    gPool[best] = gPool[--gPoolLen];
    pthread_mutex_unlock(&gPoolMu);
    runAndDeleteTask(task);
    pthread_mutex_lock(&gPoolMu);
  }
  return nullptr;
}

void enqueue(void* task, double delaySeconds) {
  timespec due;
  clock_gettime(CLOCK_MONOTONIC, &due);
  if (delaySeconds > 0) {
    const long long ns = static_cast<long long>(delaySeconds * 1e9);
    due.tv_sec += ns / 1000000000LL;
    due.tv_nsec += ns % 1000000000LL;
    if (due.tv_nsec >= 1000000000L) {
      due.tv_sec++;
      due.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&gPoolMu);
  if (!gPoolThread) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // A thread V8 cannot do without (a Join would still finish on the main thread, but node's
    // drain would wait): failing to make one is fatal, as it is for node's own pool.
    if (pthread_create(&t, &attr, poolMain, nullptr) != 0) abort();
    pthread_attr_destroy(&attr);
    gPoolThread = true;
  }
  if (gPoolLen == gPoolCap) {
    gPoolCap = gPoolCap ? gPoolCap * 2 : 16;
    gPool = static_cast<PoolTask*>(realloc(gPool, gPoolCap * sizeof *gPool));
    if (!gPool) abort();
  }
  gPool[gPoolLen++] = PoolTask{task, due};
  pthread_cond_signal(&gPoolCv);
  pthread_mutex_unlock(&gPoolMu);
}

// The replacements. std::unique_ptr<v8::Task> is passed by invisible reference (Itanium ABI) and
// destroyed by the caller: take the pointer and leave null behind.
void poolCallOnWorkerThread(void* /*self*/, void** holder) {
  void* task = *holder;
  *holder = nullptr;
  if (task) enqueue(task, 0);
}

void poolCallDelayedOnWorkerThread(void* /*self*/, void** holder, double delaySeconds) {
  void* task = *holder;
  *holder = nullptr;
  if (task) enqueue(task, delaySeconds);
}

void initPoolCondition() {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&gPoolCv, &ca);
  pthread_condattr_destroy(&ca);
}

// In the template, once: finds the slots and points them at the replacements. Null, or why this
// node cannot be templated.
const char* takeOverWorkerTasks() {
  if (const char* why = findPlatformSlots(&gSlots)) return why;
  initPoolCondition();
  const long page = sysconf(_SC_PAGESIZE);
  void** const slots[] = {gSlots.call, gSlots.delayed};
  for (void** slot : slots) {
    auto start = reinterpret_cast<uintptr_t>(slot) & ~static_cast<uintptr_t>(page - 1);
    if (mprotect(reinterpret_cast<void*>(start), static_cast<size_t>(page),
                 PROT_READ | PROT_WRITE) != 0) {
      return "cannot make NodePlatform's vtable writable";
    }
    *slot = slot == gSlots.call ? reinterpret_cast<void*>(&poolCallOnWorkerThread)
                                : reinterpret_cast<void*>(&poolCallDelayedOnWorkerThread);
    if (mprotect(reinterpret_cast<void*>(start), static_cast<size_t>(page), PROT_READ) != 0) {
      return "cannot restore NodePlatform's vtable";
    }
  }
  return nullptr;
}

// In G2: the pool thread is the template's, and its lock may have been held at the fork.
void resetPoolAfterFork() {
  pthread_mutex_init(&gPoolMu, nullptr);
  initPoolCondition();
  gPool = nullptr;  // the template's pending tasks: its own to run, never this process's
  gPoolLen = gPoolCap = 0;
  gPoolThread = false;
}

// ---- C: the template's child --------------------------------------------------------------------

// Writes "P<pid>" or "E<message>" to report and exits. Returns only in G2 (true).
bool runIntermediate(const Request& r, int report, pid_t template_, struct uv_loop_s* loop) {
  Err e{};
  auto fail = [&](const char* msg) {
    char out[kErrLen + 2];
    int n = snprintf(out, sizeof out, "E%s", msg);
    writeAll(report, out, static_cast<size_t>(n < 0 ? 0 : n));
    _exit(0);
  };
  if (!tieToParent(template_)) _exit(1);
  const int maxFd = replaceWithPlaceholders(r, report, &e);
  if (maxFd < 0) fail(e.text);
  // In the sandbox's cgroups (writing "0" moves only this thread: no RCU-synchronised lock) and,
  // for our children, its pid namespace.
  for (int i = 0; i < r.ncg; ++i) {
    int fd = open(r.cgroupFiles[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
      char what[kErrLen];
      snprintf(what, sizeof what, "join %.400s", r.cgroupFiles[i]);
      setErr(&e, what);
      fail(e.text);
    }
    close(fd);
  }
  if (int fd = nsFd(r, "pid"); fd >= 0 && setns(fd, 0) != 0) {
    setErr(&e, "setns pid");
    fail(e.text);
  }
  int errPipe[2];
  if (pipe2(errPipe, O_CLOEXEC) != 0) setErr(&e, "pipe"), fail(e.text);
  // G2 tells us its pid with SCM_CREDENTIALS: the kernel translates it into our (the host's) pid
  // namespace.
  int cred[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, cred) != 0) {
    setErr(&e, "socketpair");
    fail(e.text);
  }
  int one = 1;
  if (setsockopt(cred[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
    setErr(&e, "SO_PASSCRED");
    fail(e.text);
  }
  const pid_t self = getpid();
  const pid_t g1 = fork();
  if (g1 < 0) setErr(&e, "fork"), fail(e.text);
  if (g1 == 0) {
    // G1, pid namespace of the sandbox. Fork once more and leave, so that the runtime (G2) is
    // orphaned *inside* that namespace and adopted by the sandbox's init (the reaper of an orphan
    // is its dead parent's namespace's init; ours, C's, is the host's), exactly like a command
    // the init started itself.
    if (!tieToParent(self)) _exit(1);
    const pid_t g2 = fork();
    if (g2 < 0) {
      setErr(&e, "fork the runtime");
      writeAll(errPipe[1], e.text, strlen(e.text));
      _exit(127);
    }
    if (g2 != 0) _exit(0);
    // G2 (no death signal: its parent, G1, leaves at once; its reaper is the sandbox's init).
    close(errPipe[0]);
    close(report);
    close(cred[0]);
    char byte = 'p';
    struct iovec iov = {&byte, 1};
    struct ucred uc = {getpid(), getuid(), getgid()};
    char cbuf[CMSG_SPACE(sizeof uc)];
    memset(cbuf, 0, sizeof cbuf);
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof uc);
    memcpy(CMSG_DATA(c), &uc, sizeof uc);
    if (sendmsg(cred[1], &msg, 0) != 1) {
      setErr(&e, "report the runtime's pid");
      writeAll(errPipe[1], e.text, strlen(e.text));
      _exit(127);
    }
    close(cred[1]);
    resetPoolAfterFork();
    if (!becomeSandboxed(r, errPipe[1], maxFd, loop, &e)) {
      writeAll(errPipe[1], e.text, strlen(e.text));
      _exit(127);
    }
    close(errPipe[1]);  // C's EOF: set up
    return true;
  }
  close(errPipe[1]);
  close(cred[1]);
  int status;
  while (waitpid(g1, &status, 0) < 0 && errno == EINTR) {
  }
  // EOF first (G2 set up, failed or gone; G1 gone), then the datagram, without blocking.
  char err[kErrLen];
  size_t errLen = 0;
  for (;;) {
    ssize_t n = read(errPipe[0], err + errLen, sizeof err - 1 - errLen);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    errLen += static_cast<size_t>(n);
    if (errLen == sizeof err - 1) {
      char sink[256];  // keep draining to EOF
      while ((n = read(errPipe[0], sink, sizeof sink)) > 0 || (n < 0 && errno == EINTR)) {
      }
      break;
    }
  }
  err[errLen] = '\0';
  pid_t pid = 0;
  {
    char byte;
    struct iovec iov = {&byte, 1};
    char cbuf[CMSG_SPACE(sizeof(struct ucred))];
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    if (recvmsg(cred[0], &msg, MSG_DONTWAIT) == 1) {
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          struct ucred uc;
          memcpy(&uc, CMSG_DATA(c), sizeof uc);
          pid = uc.pid;
        }
      }
    }
  }
  if (errLen > 0) fail(err);
  if (pid <= 0) fail("the runtime did not report its pid");
  char out[32];
  int n = snprintf(out, sizeof out, "P%d", static_cast<int>(pid));
  writeAll(report, out, static_cast<size_t>(n));
  _exit(0);
}

// ---- the template's memory ----------------------------------------------------------------------

// V8 maps its heap, its code space and their reservations MADV_DONTFORK (VM_DONTCOPY, "dc" in
// smaps), so that node's fork+exec children do not copy page tables they never use. A child of
// the template is the opposite case: it *is* that heap. Clear the flag on every mapping before
// each fork (V8 maps new pages with it as the heap grows); a no-op on mappings without it, and
// refused (ignored) on the kernel's special mappings.
void allowForkCopies() {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  static char buf[1 << 20];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += static_cast<size_t>(n);
    if (len == sizeof buf - 1) break;
  }
  close(fd);
  buf[len] = '\0';
  for (char* line = buf; line && *line;) {
    char* next = strchr(line, '\n');
    if (next) *next++ = '\0';
    unsigned long lo = 0, hi = 0;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi > lo && !strstr(line, "[v")) {
      madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DOFORK);
    }
    line = next;
  }
}

// ---- JS entry points ----------------------------------------------------------------------------

napi_value makeString(napi_env env, const char* s) {
  napi_value v;
  napi_create_string_utf8(env, s, static_cast<size_t>(-1), &v);
  return v;
}

napi_value throwErrno(napi_env env, const char* what) {
  char msg[kErrLen];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, nullptr, msg);
  return nullptr;
}

bool argInt(napi_env env, napi_callback_info info, int index, int32_t* out) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != 0 ||
      argc <= static_cast<size_t>(index)) {
    return false;
  }
  return napi_get_value_int32(env, argv[index], out) == 0;
}

// recv(fd): one request, blocking. {msg: string, fds: [int]}, or null at EOF.
napi_value jsRecv(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!argInt(env, info, 0, &fd)) {
    napi_throw_error(env, nullptr, "recv(fd)");
    return nullptr;
  }
  static char buf[kMaxMsg + 1];
  char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  struct iovec iov = {buf, kMaxMsg};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throwErrno(env, "recvmsg from the worker");
  napi_value fds;
  napi_create_array_with_length(env, 0, &fds);
  uint32_t k = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      napi_value v;
      napi_create_int32(env, f, &v);
      napi_set_element(env, fds, k++, v);
    }
  }
  if (n == 0 && k == 0) {
    napi_value null;
    napi_get_null(env, &null);
    return null;
  }
  napi_value out;
  napi_create_object(env, &out);
  napi_value m;
  napi_create_string_utf8(env, buf, static_cast<size_t>(n), &m);
  napi_set_named_property(env, out, "msg", m);
  napi_set_named_property(env, out, "fds", fds);
  // Truncated: the request or its fds did not fit; the caller answers with an error.
  napi_value trunc;
  napi_get_boolean(env, (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0, &trunc);
  napi_set_named_property(env, out, "truncated", trunc);
  return out;
}

// send(fd, string)
napi_value jsSend(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != 0 || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != 0) {
    napi_throw_error(env, nullptr, "send(fd, string)");
    return nullptr;
  }
  char* s = getString(env, argv[1]);
  if (!s) {
    napi_throw_error(env, nullptr, "send(fd, string)");
    return nullptr;
  }
  ssize_t n;
  do {
    n = send(fd, s, strlen(s), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  free(s);
  if (n < 0) return throwErrno(env, "send to the worker");
  return nullptr;
}

// close(fd)
napi_value jsClose(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (argInt(env, info, 0, &fd)) close(fd);
  return nullptr;
}

// exit(code): _exit, never node's exit path (see the file comment).
napi_value jsExit(napi_env env, napi_callback_info info) {
  int32_t code = 0;
  if (!argInt(env, info, 0, &code)) code = 1;
  _exit(code & 0xff);
}

napi_value jsGetpid(napi_env env, napi_callback_info info) {
  napi_value v;
  napi_create_int32(env, static_cast<int32_t>(getpid()), &v);
  return v;
}

// random32(): a fresh seed from the kernel (Math.random's state must not be the template's).
napi_value jsRandom32(napi_env env, napi_callback_info info) {
  int32_t r = 0;
  while (getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r) || r == 0) {
  }
  napi_value v;
  napi_create_int32(env, r, &v);
  return v;
}

// takeOverWorkerTasks(): null, or why this node cannot be templated (see takeOverWorkerTasks).
napi_value jsTakeOverWorkerTasks(napi_env env, napi_callback_info info) {
  if (const char* why = takeOverWorkerTasks()) return makeString(env, why);
  gTookOver = true;
  napi_value null;
  napi_get_null(env, &null);
  return null;
}

// tieToParent(): the template dies with the worker. false if the worker is already gone.
napi_value jsTieToParent(napi_env env, napi_callback_info info) {
  napi_value v;
  const bool ok = prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0 && getppid() != 1;
  napi_get_boolean(env, ok, &v);
  return v;
}

// spawn(req): req = {fds, nsTypes, cgroupFiles, uid, gid, nofile, filterHex, cwd, env}.
// In the template: {pid} or {error}. In the new runtime: {child: true, pid}.
napi_value jsSpawn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value out;
  napi_create_object(env, &out);
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != 0 || argc < 1) {
    napi_set_named_property(env, out, "error", makeString(env, "spawn(request)"));
    return out;
  }
  Request r;
  if (const char* bad = parseRequest(env, argv[0], &r)) {
    napi_set_named_property(env, out, "error", makeString(env, bad));
    return out;
  }
  if (!gTookOver) {
    napi_set_named_property(env, out, "error", makeString(env, "takeOverWorkerTasks() first"));
    return out;
  }
  struct uv_loop_s* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != 0 || !loop) {
    napi_set_named_property(env, out, "error", makeString(env, "no event loop"));
    return out;
  }
  int rp[2];
  if (pipe2(rp, O_CLOEXEC) != 0) {
    napi_set_named_property(env, out, "error", makeString(env, strerror(errno)));
    return out;
  }
  allowForkCopies();
  const pid_t self = getpid();
  const pid_t c = fork();
  if (c < 0) {
    const int saved = errno;
    close(rp[0]);
    close(rp[1]);
    errno = saved;
    Err e;
    setErr(&e, "fork");
    napi_set_named_property(env, out, "error", makeString(env, e.text));
    return out;
  }
  if (c == 0) {
    close(rp[0]);
    runIntermediate(r, rp[1], self, loop);  // returns only in G2
    napi_value t;
    napi_get_boolean(env, true, &t);
    napi_set_named_property(env, out, "child", t);
    napi_value pid;
    napi_create_int32(env, static_cast<int32_t>(getpid()), &pid);
    napi_set_named_property(env, out, "pid", pid);
    return out;
  }
  close(rp[1]);
  char answer[kErrLen + 64];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(rp[0], answer + len, sizeof answer - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += static_cast<size_t>(n);
    if (len == sizeof answer - 1) break;
  }
  answer[len] = '\0';
  close(rp[0]);
  int status;
  while (waitpid(c, &status, 0) < 0 && errno == EINTR) {
  }
  if (len > 1 && answer[0] == 'P') {
    long pid = 0;
    if (parseLong(answer + 1, &pid)) {
      napi_value v;
      napi_create_int32(env, static_cast<int32_t>(pid), &v);
      napi_set_named_property(env, out, "pid", v);
      return out;
    }
  }
  napi_set_named_property(
      env, out, "error",
      makeString(env, len > 1 && answer[0] == 'E' ? answer + 1 : "template child died"));
  return out;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int32_t node_api_module_get_api_version_v1(void) {
  return 8;
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env,
                                                                          napi_value exports) {
  struct {
    const char* name;
    napi_callback cb;
  } fns[] = {
      {"recv", jsRecv},   {"send", jsSend},         {"close", jsClose},
      {"exit", jsExit},   {"getpid", jsGetpid},     {"tieToParent", jsTieToParent},
      {"spawn", jsSpawn}, {"random32", jsRandom32}, {"takeOverWorkerTasks", jsTakeOverWorkerTasks}};
  for (const auto& f : fns) {
    napi_value fn;
    if (napi_create_function(env, f.name, static_cast<size_t>(-1), f.cb, nullptr, &fn) != 0 ||
        napi_set_named_property(env, exports, f.name, fn) != 0) {
      return nullptr;
    }
  }
  return exports;
}
}
