// Stratus nodejs template ("zygote"), issue 4: a node process with the runtime (bootstrap.js)
// already loaded, started once per worker on the host (as root, like the worker's spawner), which
// forks new runtimes into sandboxes that the worker has just created. The children share the
// template's memory copy-on-write and skip node's start-up.
//
// Started as `node --single-threaded [heap flags] zygote.js` with the control socket on fd 3. The
// protocol is python3/zygote.py's, byte for byte, so src/sandbox/zygote.cc drives both:
//   request  one SOCK_SEQPACKET message, JSON {"nsTypes", "cgroupFiles", "uid", "gid", "nofile",
//            "filterHex", "cwd", "env": ["K=V"...], "argv": null | [script, args...]} with
//            SCM_RIGHTS fds [stdout, stderr, namespace fds in nsTypes order];
//   answer   {"pid": host pid} once the child is set up, or {"error": "..."}.
// Receiving fds, the fork chain and every step of confinement are native (stratus_fork.node,
// fork_addon.cc); this file only loops and, in a new runtime, starts it.
//
// Why --single-threaded: fork() keeps only the calling thread. V8 normally hands GC and compile
// work to platform worker threads; in a forked child those threads do not exist, so a posted task
// would never run and whoever waits for it (a GC, node's DrainTasks at exit) would wait forever.
// The flag keeps all of V8's work on the main thread. Node's own exit path still joins those
// threads, so a forked runtime never takes it: every exit goes through _exit (below).
//
// Nothing function-specific ever reaches the template: a child starts blank and receives its
// function from the worker afterwards.
'use strict';

const path = require('path');

const CONTROL_FD = 3;
const addon = require(path.join(__dirname, 'stratus_fork.node'));
if (!addon.tieToParent()) addon.exit(1);  // the worker is already gone
{
  // V8's worker-thread tasks go to the addon's thread from now on (fork_addon.cc says why).
  const why = addon.takeOverWorkerTasks();
  if (why !== null) throw new Error(`this node cannot be templated: ${why}`);
}
const bootstrap = require('./bootstrap.js');

// Serves requests until one of them makes this process a new runtime ({req, pid}); the template
// itself never returns (it exits when the worker closes the control socket).
function serve() {
  for (;;) {
    const m = addon.recv(CONTROL_FD);
    if (m === null) addon.exit(0);
    let answer;
    try {
      if (m.truncated) throw new Error('request or its fds truncated');
      const req = JSON.parse(m.msg);
      const r = addon.spawn({
        fds: m.fds,
        nsTypes: req.nsTypes || [],
        cgroupFiles: req.cgroupFiles || [],
        uid: String(req.uid),
        gid: String(req.gid),
        nofile: String(req.nofile || 0),
        filterHex: req.filterHex || '',
        cwd: req.cwd || '/',
        env: req.env || [],
      });
      // The new runtime: the fds it was handed are closed already (their numbers may be reused).
      if (r.child) return { req, pid: r.pid };
      answer = r.error !== undefined ? { error: String(r.error) } : { pid: r.pid };
    } catch (e) {  // a bad request must not end the template
      answer = { error: String(e && e.message ? e.message : e) };
    }
    for (const fd of m.fds) addon.close(fd);
    addon.send(CONTROL_FD, JSON.stringify(answer));
  }
}

// Every way out of a forked runtime ends in _exit with node's exit code.
function exitThroughUnderscoreExit() {
  process.reallyExit = (code) => addon.exit(Number(code) || 0);  // process.exit() ends here
  // An uncaught exception with no listener: node emits 'exit' *before* printing the error, and
  // our 'exit' leaves at once, so print it here.
  let fatalError = null;
  process.on('uncaughtExceptionMonitor', (err) => {
    fatalError = process.listenerCount('uncaughtException') === 0 ? { err } : null;
  });
  const emit = process.emit;
  // 'exit' is emitted on every path (process.exit, the end of the event loop, a fatal exception);
  // the listeners run, then the process ends without node's teardown.
  process.emit = function (event, ...args) {
    if (event !== 'exit') return emit.call(this, event, ...args);
    try {
      emit.call(this, event, ...args);
    } finally {
      if (fatalError) {
        const e = fatalError.err;
        try {
          require('fs').writeSync(2, `${e && e.stack ? e.stack : `Uncaught ${String(e)}`}\n\n` +
              `Node.js ${process.version}\n`);
        } catch (_) {
          // stderr closed: nothing to tell
        }
      }
      let code = process.exitCode;
      if (code === undefined) code = args[0];
      addon.exit(Number(code) || 0);
    }
  };
}

function becomeRuntime({ req, pid }) {
  // process.pid is a value set at node's start (the template's); getpid() is ours, in the
  // sandbox's pid namespace.
  Object.defineProperty(process, 'pid', { value: pid, enumerable: true, configurable: true });
  exitThroughUnderscoreExit();
  // Math.random: V8 seeds a context's generator on first use from the isolate's generator, whose
  // state every child shares with the template. A seed of its own for each runtime (read when the
  // context's state is still unseeded, which the template guarantees by never calling it), used
  // once and reset: isolates made later (worker_threads) then seed themselves from the kernel as
  // usual instead of repeating this sequence.
  const v8 = require('v8');
  v8.setFlagsFromString(`--random-seed=${addon.random32()}`);
  Math.random();
  v8.setFlagsFromString('--random-seed=0');
  if (Array.isArray(req.argv) && req.argv.length > 0) {
    // A script instead of the runtime (the escape probe): run it as node's main module.
    process.argv = [process.execPath, path.resolve(String(req.argv[0])),
      ...req.argv.slice(1).map(String)];
    require('module').runMain();
    return;
  }
  bootstrap.main();
}

becomeRuntime(serve());
