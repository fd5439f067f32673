# Stratus python3 runtime: runs inside the sandbox, speaks the frame protocol of
# src/runtime/protocol.h with the worker over the Unix socket at $STRATUS_RUNTIME_SOCKET and calls
# an AWS-Lambda-style handler(event, context). Started by bootstrap.py (which runs the bytecode
# that installAssets compiled, or this source).
#
# Startup time matters (it is on the cold-start path), so this file imports only C modules that
# are built into the interpreter (_socket, _thread, _json); `json`, `re`, `enum`, `threading`,
# `importlib` and `traceback` would cost ~8 ms together. traceback is imported lazily on the first
# error. The standard json module is the fallback where _json is missing.
#
# Threads: the main thread reads frames; each invoke runs on a pooled handler thread (so up to
# instanceConcurrency calls overlap); frames are written under one lock.
import sys
import os
import time
import _socket
import _thread

try:
    from _json import make_scanner as _c_make_scanner
    from _json import make_encoder as _c_make_encoder
    from _json import encode_basestring_ascii as _c_encode_str
except ImportError:  # pragma: no cover - every CPython build has _json
    _c_make_scanner = None

MAGIC = 0x46525453
VERSION = 1
HELLO, LOAD, READY, INIT_ERROR, INVOKE, RESULT, ERROR = 1, 2, 3, 4, 5, 6, 7
MAX_META = 1 << 20
MAX_BODY = 64 << 20

sys.dont_write_bytecode = True  # /code is read-only; never try to write __pycache__


# ---- JSON, through the C accelerator directly --------------------------------------------------


class _ScanContext:
    # The attributes make_scanner reads (same defaults as json.JSONDecoder()).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__
    memo = None


def _json_default(o):
    raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)


if _c_make_scanner is not None:
    _scan = _c_make_scanner(_ScanContext())  # only ever used by the reader thread

    def _loads(s):
        s = s.strip(" \t\n\r")
        try:
            obj, end = _scan(s, 0)
        except StopIteration:
            raise ValueError("Expecting value")
        if end != len(s):
            raise ValueError("Extra data")
        return obj

    def _dumps(o):
        if isinstance(o, str):
            return _c_encode_str(o)
        # A fresh encoder per call: its circular-reference markers dict is per call.
        enc = _c_make_encoder({}, _json_default, _c_encode_str, None, ": ", ", ", False, False,
                              True)
        return "".join(enc(o, 0))
else:  # pragma: no cover
    import json as _json_mod
    _loads = _json_mod.loads

    def _dumps(o):
        return _json_mod.dumps(o, default=_json_default)


# ---- framing -----------------------------------------------------------------------------------

_sock = None
_wlock = _thread.allocate_lock()


def _send(ftype, meta, body=b""):
    m = _dumps(meta).encode("utf-8")
    hdr = (MAGIC | VERSION << 32 | ftype << 48 | len(m) << 64 | len(body) << 96).to_bytes(
        16, "little")
    with _wlock:
        _sock.sendall(b"".join((hdr, m, body)))


def _frames(sock):
    buf = bytearray()
    while True:
        data = sock.recv(262144)
        if not data:
            return
        buf += data
        while len(buf) >= 16:
            h = int.from_bytes(buf[:16], "little")
            magic, ver = h & 0xFFFFFFFF, (h >> 32) & 0xFFFF
            ftype, ml, bl = (h >> 48) & 0xFFFF, (h >> 64) & 0xFFFFFFFF, h >> 96
            if magic != MAGIC or ver != VERSION or ml > MAX_META or bl > MAX_BODY:
                _fatal("bad frame from worker (magic %#x version %d)" % (magic, ver))
            n = 16 + ml + bl
            if len(buf) < n:
                break
            meta = _loads(buf[16:16 + ml].decode("utf-8")) if ml else {}
            body = bytes(buf[16 + ml:n])
            del buf[:n]
            yield ftype, meta, body


def _fatal(msg):
    try:
        sys.stderr.write("stratus bootstrap: %s\n" % msg)
        sys.stderr.flush()
    finally:
        os._exit(1)


# ---- Lambda context ----------------------------------------------------------------------------

_fn = {"name": "", "memory": "128", "arn": "", "group": "", "stream": "", "fc": None}


class FunctionMeta:
    """context.function, as Function Compute's python runtime spells it."""
    __slots__ = ("name", "handler", "memory", "timeout", "initializer")

    def __init__(self, name, handler, memory, timeout, initializer):
        self.name, self.handler, self.memory = name, handler, memory
        self.timeout, self.initializer = timeout, initializer


class LambdaContext:
    __slots__ = ("aws_request_id", "function_name", "function_version", "memory_limit_in_mb",
                 "invoked_function_arn", "log_group_name", "log_stream_name", "identity",
                 "client_context", "_deadline_ms")

    def __init__(self, request_id, deadline_ms, function_name=None, memory=None):
        self.aws_request_id = request_id
        self.function_name = function_name or _fn["name"]
        self.function_version = "$LATEST"
        # A string, as in AWS's runtime interface client (it comes from an env variable there).
        self.memory_limit_in_mb = str(memory) if memory else _fn["memory"]
        self.invoked_function_arn = _fn["arn"]
        self.log_group_name = _fn["group"]
        self.log_stream_name = _fn["stream"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    @property
    def request_id(self):  # Function Compute spelling
        return self.aws_request_id

    @property
    def function(self):  # Function Compute: context.function.name / .handler / .memory / .timeout
        return _fn["fc"]

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self):
        return "LambdaContext(aws_request_id=%r, function_name=%r)" % (self.aws_request_id,
                                                                       self.function_name)


# ---- errors ------------------------------------------------------------------------------------


class _InitError(Exception):
    def __init__(self, error_type, message, stack=None):
        Exception.__init__(self, message)
        self.error_type, self.message, self.stack = error_type, message, stack or []


# This file's name as its code objects know it (the bytecode may have been compiled elsewhere).
_SELF = (lambda: 0).__code__.co_filename


def _stack_of(e):
    import traceback
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if f.filename != _SELF and not f.filename.startswith("<frozen importlib")]
    return traceback.format_list(frames)


def _log_error(error_type, message, stack):
    try:
        sys.stderr.write("[ERROR] %s: %s\n%s" % (
            error_type, message,
            ("Traceback (most recent call last):\n" + "".join(stack)) if stack else ""))
        sys.stderr.flush()
    except Exception:
        pass


def _flush_std():
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


# ---- handler loading ---------------------------------------------------------------------------


def _resolve(spec, what):
    """spec is 'file.function' or 'dir/file.function' (module path relative to the code dir)."""
    modpath, dot, fname = spec.rpartition(".")
    if not dot or not modpath or not fname:
        raise _InitError("Runtime.MalformedHandlerName",
                         "Bad %s '%s': expected 'file.function'" % (what, spec))
    modname = modpath.replace("/", ".")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise _InitError("Runtime.BuiltInModuleConflict",
                         "Cannot use built-in module %s as a handler module" % modname)
    try:
        __import__(modname)
        module = sys.modules[modname]
    except SyntaxError as e:
        stack = ['  File "%s" Line %s\n    %s\n' % (e.filename, e.lineno,
                                                   (e.text or "").strip())]
        raise _InitError("Runtime.UserCodeSyntaxError",
                         "Syntax error in module '%s': %s" % (modpath, e), stack)
    except ImportError as e:
        raise _InitError("Runtime.ImportModuleError",
                         "Unable to import module '%s': %s" % (modpath, e), _stack_of(e))
    except Exception as e:
        # Like Lambda: an exception raised by the module's top-level code keeps its own type.
        raise _InitError(type(e).__name__, str(e), _stack_of(e))
    fn = getattr(module, fname, None)
    if fn is None:
        raise _InitError("Runtime.HandlerNotFound",
                         "Handler '%s' missing on module '%s'" % (fname, modpath))
    if not callable(fn):
        raise _InitError("Runtime.HandlerNotFound",
                         "Handler '%s' on module '%s' is not callable" % (fname, modpath))
    return fn


_handler = None
_init_error = None
# With instanceConcurrency 1 calls never overlap, so they run on the reading thread itself: no
# thread handoff and no GIL handover per call (p50 ~30 us instead of ~45 us per warm call).
_inline = False


def _load(meta):
    global _handler, _inline
    t0 = time.monotonic()
    env = meta.get("env") or {}
    for k, v in env.items():
        os.environ[str(k)] = str(v)
    # PYTHONPATH only takes effect at interpreter start; honour one delivered with the load.
    extra = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    code_dir = meta.get("codeDir") or "/code"
    sys.path[0:0] = [code_dir] + extra
    sys.path_importer_cache.clear()  # the code may have been mounted after we started
    try:
        os.chdir(code_dir)  # Lambda runs handlers with the task root as working directory
    except OSError:
        pass
    name = meta.get("functionName") or os.environ.get("FC_FUNCTION_NAME", "")
    _fn["name"] = name
    _fn["memory"] = str(meta.get("memoryMb") or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                        or 128)
    _fn["arn"] = "arn:aws:lambda:stratus:000000000000:function:" + name
    _fn["group"] = "/aws/lambda/" + name
    _fn["stream"] = time.strftime("%Y/%m/%d", time.gmtime()) + "/[$LATEST]%08x%08x" % (
        os.getpid(), int(time.time()))
    _fn["fc"] = FunctionMeta(name, meta.get("handler") or "", int(_fn["memory"]),
                             int(meta.get("timeoutSec") or 3), meta.get("initializer") or "")
    timeout_sec = meta.get("initializationTimeoutSec") or meta.get("timeoutSec") or 3
    _inline = meta.get("instanceConcurrency") == 1

    _handler = _resolve(meta.get("handler") or "", "handler")
    initializer = meta.get("initializer")
    if initializer:
        init_fn = _resolve(initializer, "initializer")
        ctx = LambdaContext(meta.get("requestId") or "init",
                            time.time() * 1000 + timeout_sec * 1000)
        try:
            init_fn(ctx)
        except Exception as e:
            raise _InitError(type(e).__name__, str(e), _stack_of(e))
        finally:
            _flush_std()
    return int((time.monotonic() - t0) * 1000)


# ---- invocations -------------------------------------------------------------------------------


def _error_meta(rid, error_type, message, stack):
    return {"requestId": rid, "errorType": error_type, "errorMessage": message,
            "stackTrace": stack, "handled": False}


def _run(rid, event, ctx):
    if _handler is None:
        e = _init_error or _InitError("Runtime.Uninitialized", "no handler loaded")
        _send(ERROR, _error_meta(rid, e.error_type, e.message, e.stack))
        return
    try:
        result = _handler(event, ctx)
    except SystemExit as e:
        # Like Lambda: a handler that exits the process ends the instance.
        _flush_std()
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException as e:  # noqa: B902 - report KeyboardInterrupt & co. as errors too
        stack = _stack_of(e)
        et, msg = type(e).__name__, str(e)
        _log_error(et, msg, stack)
        _flush_std()
        _send(ERROR, _error_meta(rid, et, msg, stack))
        return
    try:
        body = _dumps(result).encode("utf-8")
    except Exception as e:
        msg = "Unable to marshal response: %s" % e
        _log_error("Runtime.MarshalError", msg, [])
        _flush_std()
        _send(ERROR, _error_meta(rid, "Runtime.MarshalError", msg, []))
        return
    _flush_std()
    _send(RESULT, {"requestId": rid}, body)


# A tiny thread pool without `threading`/`queue`: each idle thread blocks on its own lock; submit
# hands the job over and releases that lock, or starts a thread when none is idle.
_pool_lock = _thread.allocate_lock()
_idle = []


def _pool_thread(slot):
    while True:
        job = slot[1]
        slot[1] = None
        try:
            _run(*job)
        except BaseException as e:  # a failed send: the worker is gone
            _fatal("invoke failed: %r" % (e,))
        with _pool_lock:
            _idle.append(slot)
        slot[0].acquire()  # released by _submit once a job is set


def _submit(job):
    with _pool_lock:
        slot = _idle.pop() if _idle else None
    if slot is None:
        lock = _thread.allocate_lock()
        lock.acquire()
        _thread.start_new_thread(_pool_thread, ([lock, job],))
    else:
        slot[1] = job
        slot[0].release()


def _decode_event(body):
    if not body:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace")
    try:
        return _loads(text)
    except Exception:
        return text  # not JSON: the handler gets the raw string


def main():
    global _sock, _init_error
    path = os.environ.get("STRATUS_RUNTIME_SOCKET")
    if not path:
        _fatal("STRATUS_RUNTIME_SOCKET is not set")
    _sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        _sock.connect(path)
    except OSError as e:
        _fatal("connect %s: %s" % (path, e))
    # Sandboxes come with their own python on the read-only root; keep its packages importable
    # (we run with -S to skip site.py and its .pth hooks, which cost more than the whole runtime).
    if sys.flags.no_site:
        v = "python%d.%d" % sys.version_info[:2]
        for d in ("/usr/local/lib/%s/dist-packages" % v, "/usr/lib/python3/dist-packages"):
            if d not in sys.path:
                sys.path.append(d)
    _send(HELLO, {"runtime": "python3", "pid": os.getpid(), "version": sys.version.split()[0]})
    for ftype, meta, body in _frames(_sock):
        if ftype == INVOKE:
            rid = meta.get("requestId") or ""
            ctx = LambdaContext(rid, meta.get("deadlineMs") or (time.time() * 1000 + 3000),
                                meta.get("functionName"), meta.get("memoryMb"))
            if _inline:
                try:
                    _run(rid, _decode_event(body), ctx)
                except BaseException as e:  # a failed send: the worker is gone
                    _fatal("invoke failed: %r" % (e,))
            else:
                _submit((rid, _decode_event(body), ctx))
        elif ftype == LOAD:
            if _handler is not None or _init_error is not None:
                _fatal("second load message")
            try:
                ms = _load(meta)
            except _InitError as e:
                _init_error = e
                _log_error(e.error_type, e.message, e.stack)
                _send(INIT_ERROR,
                      {"errorType": e.error_type, "errorMessage": e.message, "stackTrace": e.stack})
                continue
            _send(READY, {"initDurationMs": ms})
        else:
            _fatal("unexpected frame type %d" % ftype)
    # The worker closed the connection: the instance is being stopped.
    _flush_std()
    os._exit(0)


if __name__ == "__main__":
    main()
