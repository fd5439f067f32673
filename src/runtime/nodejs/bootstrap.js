// Stratus nodejs runtime bootstrap: runs inside the sandbox, speaks the frame protocol of
// src/runtime/protocol.h with the worker over the Unix socket at $STRATUS_RUNTIME_SOCKET and calls
// AWS-Lambda-style handlers: async (event, context), promise-returning, or
// (event, context, callback). Calls interleave on the event loop (up to instanceConcurrency).
//
// Only built-in modules that are already in node's startup snapshot are required eagerly (net,
// path, fs); url is loaded only for ES modules. Loading this file has no side effect but the
// requires when it is not node's main module (the template, zygote.js, loads it that way).
'use strict';

const net = require('net');
const path = require('path');
const fs = require('fs');

const MAGIC = 0x46525453;
const VERSION = 1;
const T = { HELLO: 1, LOAD: 2, READY: 3, INIT_ERROR: 4, INVOKE: 5, RESULT: 6, ERROR: 7 };
const MAX_META = 1 << 20;
const MAX_BODY = 64 << 20;

let sock = null;
let handler = null;
let initError = null;
const fn = { name: '', memory: '128', arn: '', group: '', stream: '', fc: {} };

function fatal(msg) {
  try {
    fs.writeSync(2, `stratus bootstrap: ${msg}\n`);
  } finally {
    process.exit(1);
  }
}

// ---- framing ------------------------------------------------------------------------------------

function send(type, meta, body) {
  const m = Buffer.from(JSON.stringify(meta), 'utf8');
  const b = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const h = Buffer.allocUnsafe(16);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt16LE(VERSION, 4);
  h.writeUInt16LE(type, 6);
  h.writeUInt32LE(m.length, 8);
  h.writeUInt32LE(b ? b.length : 0, 12);
  // One write per frame: concurrent calls never interleave inside a frame.
  sock.write(b ? Buffer.concat([h, m, b]) : Buffer.concat([h, m]));
}

let chunks = [];
let buffered = 0;
let need = 16;  // bytes needed before parsing is worth trying: no quadratic re-concatenation

function onData(data) {
  chunks.push(data);
  buffered += data.length;
  while (buffered >= need) {
    const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, buffered);
    chunks = [buf];
    const magic = buf.readUInt32LE(0);
    const version = buf.readUInt16LE(4);
    const type = buf.readUInt16LE(6);
    const ml = buf.readUInt32LE(8);
    const bl = buf.readUInt32LE(12);
    if (magic !== MAGIC || version !== VERSION || ml > MAX_META || bl > MAX_BODY) {
      fatal(`bad frame from worker (magic 0x${magic.toString(16)} version ${version})`);
    }
    const n = 16 + ml + bl;
    if (buffered < n) {
      need = n;
      return;
    }
    const meta = ml ? JSON.parse(buf.toString('utf8', 16, 16 + ml)) : {};
    const body = buf.subarray(16 + ml, n);
    const rest = buf.subarray(n);
    chunks = rest.length ? [rest] : [];
    buffered = rest.length;
    need = 16;
    onFrame(type, meta, body);
  }
}

function onFrame(type, meta, body) {
  if (type === T.INVOKE) {
    invoke(meta, body);
  } else if (type === T.LOAD) {
    if (handler || initError) fatal('second load message');
    load(meta).then(
      (ms) => send(T.READY, { initDurationMs: ms }),
      (e) => {
        initError = e;
        logError(e.errorType, e.errorMessage, e.stackTrace);
        send(T.INIT_ERROR, {
          errorType: e.errorType,
          errorMessage: e.errorMessage,
          stackTrace: e.stackTrace,
        });
      });
  } else {
    fatal(`unexpected frame type ${type}`);
  }
}

// ---- errors -------------------------------------------------------------------------------------

class InitError {
  constructor(errorType, errorMessage, stackTrace) {
    this.errorType = errorType;
    this.errorMessage = errorMessage;
    this.stackTrace = stackTrace || [];
  }
}

// Lambda's shape for an error value: Error objects by name/message/stack lines, anything else by
// its type and string form.
function errorShape(err) {
  if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
    const stack = typeof err.stack === 'string' ? err.stack.split('\n') : [];
    return {
      errorType: err.name || (err.constructor && err.constructor.name) || 'Error',
      errorMessage: String(err.message),
      stackTrace: stack,
    };
  }
  return { errorType: typeof err, errorMessage: String(err), stackTrace: [] };
}

function logError(type, message, stack) {
  try {
    const s = Array.isArray(stack) && stack.length ? stack.join('\n') : `${type}: ${message}`;
    fs.writeSync(2, `ERROR\t${JSON.stringify({ errorType: type, errorMessage: message })}\n${s}\n`);
  } catch (_) {
    // a closed stderr must not take the call down
  }
}

// ---- handler loading ----------------------------------------------------------------------------

// "dir/file.function" or "file.nested.function": the module is the part of the basename before the
// first dot, the rest is a property path (as in Lambda's node runtime).
function splitHandler(spec, what) {
  const slash = spec.lastIndexOf('/');
  const base = spec.slice(slash + 1);
  const dot = base.indexOf('.');
  if (dot <= 0 || dot === base.length - 1) {
    throw new InitError('Runtime.MalformedHandlerName',
        `Bad ${what} '${spec}': expected 'file.function'`);
  }
  return [spec.slice(0, slash + 1) + base.slice(0, dot), base.slice(dot + 1)];
}

async function importFile(file) {
  const { pathToFileURL } = require('url');
  return import(pathToFileURL(file).href);
}

// .mjs, or .js inside a package whose nearest package.json says "type": "module". Loading those
// with import() directly avoids node 20's require(esm) warning and handles top-level await.
function isEsm(file) {
  if (file.endsWith('.mjs')) return true;
  if (!file.endsWith('.js')) return false;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    let text = null;
    try {
      text = fs.readFileSync(path.join(dir, 'package.json'), 'utf8');
    } catch (_) {
      // no package.json here: look further up
    }
    if (text !== null) {
      try {
        return JSON.parse(text).type === 'module';
      } catch (_) {
        return false;
      }
    }
    if (dir === path.dirname(dir)) return false;
  }
}

async function loadModule(codeDir, modPath) {
  const base = path.resolve(codeDir, modPath);
  let file = null;
  for (const ext of ['.js', '.mjs', '.cjs']) {
    if (fs.existsSync(base + ext)) {
      file = base + ext;
      break;
    }
  }
  try {
    if (file && isEsm(file)) return await importFile(file);
    try {
      // require() from an absolute path inside the code dir, so /code/node_modules resolves.
      return require(file || base);
    } catch (e) {
      if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
        return await importFile(file || base);
      }
      throw e;
    }
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw new InitError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`,
          errorShape(e).stackTrace);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new InitError('Runtime.ImportModuleError', `Error: ${e.message}`,
          errorShape(e).stackTrace);
    }
    // Like Lambda: an exception thrown by the module's top-level code keeps its own type.
    const s = errorShape(e);
    throw new InitError(s.errorType, s.errorMessage, s.stackTrace);
  }
}

async function resolve(codeDir, spec, what) {
  const [modPath, prop] = splitHandler(spec, what);
  const mod = await loadModule(codeDir, modPath);
  let f = mod;
  for (const p of prop.split('.')) f = f == null ? undefined : f[p];
  // An ES module imported as CommonJS (or the reverse) may expose its exports under .default.
  if (f === undefined && mod && mod.default && typeof mod.default === 'object') {
    f = mod.default;
    for (const p of prop.split('.')) f = f == null ? undefined : f[p];
  }
  if (f === undefined) {
    throw new InitError('Runtime.HandlerNotFound', `${modPath}.${prop} is undefined or not exported`);
  }
  if (typeof f !== 'function') {
    throw new InitError('Runtime.HandlerNotFound', `${modPath}.${prop} is not a function`);
  }
  return f;
}

async function load(meta) {
  const t0 = process.hrtime.bigint();
  const env = meta.env || {};
  for (const k of Object.keys(env)) process.env[k] = String(env[k]);
  const codeDir = meta.codeDir || '/code';
  try {
    process.chdir(codeDir);  // Lambda runs handlers with the task root as working directory
  } catch (_) {
    // a missing code dir shows up as an import error below
  }
  fn.name = meta.functionName || process.env.FC_FUNCTION_NAME || '';
  fn.memory = String(meta.memoryMb || process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || 128);
  fn.arn = `arn:aws:lambda:stratus:000000000000:function:${fn.name}`;
  fn.group = `/aws/lambda/${fn.name}`;
  const d = new Date();
  const ymd = `${d.getUTCFullYear()}/${String(d.getUTCMonth() + 1).padStart(2, '0')}/` +
      `${String(d.getUTCDate()).padStart(2, '0')}`;
  fn.stream = `${ymd}/[$LATEST]${process.pid.toString(16).padStart(8, '0')}` +
      `${Math.floor(Date.now() / 1000).toString(16)}`;
  // context.function, as Function Compute's node runtime spells it.
  fn.fc = Object.freeze({
    name: fn.name, handler: meta.handler || '', memory: Number(fn.memory),
    timeout: meta.timeoutSec || 3, initializer: meta.initializer || '',
  });
  const timeoutSec = meta.initializationTimeoutSec || meta.timeoutSec || 3;

  try {
    const h = await resolve(codeDir, meta.handler || '', 'handler');
    if (meta.initializer) {
      const init = await resolve(codeDir, meta.initializer, 'initializer');
      const ctx = makeContext(meta.requestId || 'init', Date.now() + timeoutSec * 1000, {});
      try {
        await callHandler(init, [ctx], ctx);
      } catch (e) {
        const s = errorShape(e.error);
        throw new InitError(s.errorType, s.errorMessage, s.stackTrace);
      }
    }
    handler = h;
  } catch (e) {
    if (e instanceof InitError) throw e;
    const s = errorShape(e);
    throw new InitError(s.errorType, s.errorMessage, s.stackTrace);
  }
  return Number((process.hrtime.bigint() - t0) / 1000000n);
}

// ---- invocations --------------------------------------------------------------------------------

function makeContext(requestId, deadlineMs, meta) {
  const ctx = {
    awsRequestId: requestId,
    requestId,  // Function Compute spelling
    function: fn.fc,  // Function Compute: context.function.name / handler / memory / timeout
    functionName: meta.functionName || fn.name,
    functionVersion: '$LATEST',
    memoryLimitInMB: meta.memoryMb ? String(meta.memoryMb) : fn.memory,
    invokedFunctionArn: fn.arn,
    logGroupName: fn.group,
    logStreamName: fn.stream,
    callbackWaitsForEmptyEventLoop: true,  // accepted; calls complete when the callback fires
    getRemainingTimeInMillis: () => Math.max(0, Math.floor(deadlineMs - Date.now())),
  };
  return ctx;
}

// Runs f(...args, callback) and settles on the first of: callback / context.succeed|fail|done,
// the returned promise, or a synchronous return. Rejects with {error, handled}.
function callHandler(f, args, ctx) {
  return new Promise((resolvePromise, rejectPromise) => {
    let done = false;
    const settle = (err, result, handled) => {
      if (done) return;
      done = true;
      if (err != null) rejectPromise({ error: err, handled });
      else resolvePromise(result);
    };
    if (ctx) {
      // Legacy (pre node 4.3) completion methods.
      ctx.succeed = (result) => settle(null, result, false);
      ctx.fail = (err) => settle(err == null ? new Error('handled') : err, undefined, true);
      ctx.done = (err, result) => settle(err, result, err != null);
    }
    const callback = (err, result) => settle(err, result, true);
    let ret;
    try {
      ret = f(...args, callback);
    } catch (e) {
      settle(e === undefined || e === null ? new Error(String(e)) : e, undefined, false);
      return;
    }
    if (ret && typeof ret.then === 'function') {
      ret.then((v) => settle(null, v, false),
          (e) => settle(e === undefined || e === null ? new Error(String(e)) : e, undefined, false));
    } else if (f.length < args.length + 1 && !done) {
      // A synchronous handler that takes no callback: its return value is the result.
      settle(null, ret, false);
    }
    // Otherwise the handler takes a callback: wait for it (the worker enforces the timeout).
  });
}

function invoke(meta, body) {
  const rid = meta.requestId || '';
  if (!handler) {
    const e = initError || new InitError('Runtime.Uninitialized', 'no handler loaded');
    send(T.ERROR, {
      requestId: rid, errorType: e.errorType, errorMessage: e.errorMessage,
      stackTrace: e.stackTrace, handled: false,
    });
    return;
  }
  let event;
  if (body.length === 0) {
    event = {};
  } else {
    const text = body.toString('utf8');
    try {
      event = JSON.parse(text);
    } catch (_) {
      event = text;  // not JSON: the handler gets the raw string
    }
  }
  const ctx = makeContext(rid, meta.deadlineMs || Date.now() + 3000, meta);
  callHandler(handler, [event, ctx], ctx).then(
      (result) => {
        let out;
        try {
          out = JSON.stringify(result === undefined ? null : result);
          if (out === undefined) out = 'null';  // functions, symbols
        } catch (e) {
          const msg = `Unable to stringify response body: ${e.message}`;
          logError('Runtime.MarshalError', msg, []);
          send(T.ERROR, {
            requestId: rid, errorType: 'Runtime.MarshalError', errorMessage: msg,
            stackTrace: [], handled: false,
          });
          return;
        }
        send(T.RESULT, { requestId: rid }, out);
      },
      ({ error, handled }) => {
        const s = errorShape(error);
        if (!handled) logError(s.errorType, s.errorMessage, s.stackTrace);
        send(T.ERROR, {
          requestId: rid, errorType: s.errorType, errorMessage: s.errorMessage,
          stackTrace: s.stackTrace, handled: !!handled,
        });
      });
}

// ---- main ---------------------------------------------------------------------------------------

function main() {
  // An error outside any handler's own promise chain (a throw from a timer, an unhandled
  // rejection): the instance's state is unknown, so end it; the worker replaces it.
  process.on('uncaughtException', (err) => {
    fatal(`uncaught exception: ${err && err.stack ? err.stack : String(err)}`);
  });
  process.on('unhandledRejection', (reason) => {
    fatal(`unhandled promise rejection: ${reason && reason.stack ? reason.stack : String(reason)}`);
  });
  const sockPath = process.env.STRATUS_RUNTIME_SOCKET;
  if (!sockPath) fatal('STRATUS_RUNTIME_SOCKET is not set');
  sock = net.createConnection(sockPath);
  sock.setNoDelay && sock.setNoDelay(true);
  sock.on('connect', () => {
    send(T.HELLO, { runtime: 'nodejs', pid: process.pid, version: process.version });
  });
  sock.on('data', onData);
  sock.on('error', (e) => fatal(`runtime socket ${sockPath}: ${e.message}`));
  // The worker closed the connection: the instance is being stopped.
  sock.on('close', () => process.exit(0));
}

// Run directly (node bootstrap.js), the runtime starts; required by the template (zygote.js),
// it is only loaded, and each runtime forked from the template calls main() itself.
if (require.main === module) {
  main();
} else {
  module.exports = { main };
}
