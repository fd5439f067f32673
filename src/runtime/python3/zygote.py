# Stratus python3 template ("zygote"), issue 4: a python3 interpreter with the runtime
# (stratus_runtime.py) already imported, started once per worker on the host (as root, like the
# worker's spawner), which forks new runtimes into sandboxes that the worker has just created.
# The children share the template's memory copy-on-write and skip interpreter start-up.
#
# Control: fd 3 is a SOCK_SEQPACKET socket to the worker. A request is one JSON message
#   {"nsTypes": [...], "cgroupFiles": [...], "uid", "gid", "nofile", "filterHex", "cwd",
#    "env": ["K=V", ...], "argv": null | [script, args...]}
# with SCM_RIGHTS fds [stdout, stderr, ns fds in nsTypes order]; the answer is {"pid": host pid}
# once the child is set up, or {"error": "..."}.
#
# The child becomes exactly what the sandbox's init makes of a command (src/sandbox/init_main.cc):
# it joins the sandbox's cgroup and every namespace of its init (user namespace last, so that the
# others, owned by the host's user namespace, stay out of reach), takes stdout/stderr, closes every
# other fd, drops the capability bounding set and ambient set, sets RLIMIT_CORE 0 and
# RLIMIT_NOFILE, becomes uid/gid 65534 (inside), sets NO_NEW_PRIVS, chdirs, and installs the same
# seccomp filter. Nothing function-specific ever reaches the template: a child starts as a blank
# runtime and receives its function (code, environment) from the worker afterwards, so no
# tenant's data can linger in memory that later children inherit.
import ctypes
import gc
import json
import os
import resource
import signal
import socket
import struct
import sys

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_close_range = 436

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _read_to_eof(fd):
    out = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk


def _load_runtime():
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, "stratus_runtime.py")
    code = None
    try:
        import importlib.util
        with open(os.path.join(here, "stratus_runtime.pyc"), "rb") as f:
            data = f.read()
        if data[:4] == importlib.util.MAGIC_NUMBER:
            import marshal
            code = marshal.loads(memoryview(data)[16:])
    except (OSError, ValueError, EOFError, TypeError):
        code = None
    if code is None:
        with open(src, "rb") as f:
            code = compile(f.read(), src, "exec")
    mod = type(sys)("stratus_runtime")
    mod.__file__ = src
    exec(code, mod.__dict__)
    return mod


def _become_sandboxed(req, fds, keep):
    out_fd, err_fd = fds[0], fds[1]
    ns = dict(zip(req["nsTypes"], fds[2:]))
    # Every namespace but the user namespace, while we are still the host's root.
    for t in ("cgroup", "ipc", "uts", "net", "mnt"):
        if t in ns:
            _check(_libc.setns(ns[t], 0), "setns " + t)
    if "user" in ns:
        _check(_libc.setns(ns["user"], 0), "setns user")
        # As init does after its unshare: become root of the namespace (our host uid 0 is not
        # mapped there, so we are its overflow uid). Only the later change from uid 0 to the
        # command's uid clears the capability sets.
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    # The worker's fds, the namespace fds, the control socket: none may survive (keep, the report
    # pipe, is closed by the caller once the set-up is complete).
    if keep > 3:
        _check(_libc.syscall(SYS_close_range, 3, keep - 1, 0), "close_range")
    _check(_libc.syscall(SYS_close_range, keep + 1, 0xFFFFFFFF, 0), "close_range")
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
            _check(-1, "drop capability %d" % cap)
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient caps")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nofile = int(req.get("nofile") or 0)
    if nofile > 0:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY:
            nofile = min(nofile, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    os.setgroups([])
    gid, uid = int(req["gid"]), int(req["uid"])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # A command that execve()s after the uid change is dumpable again; the id change made us not.
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "PR_SET_DUMPABLE")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    os.chdir(req.get("cwd") or "/")
    os.environ.clear()
    for kv in req.get("env") or []:
        k, _, v = kv.partition("=")
        os.environ[k] = v
    filt = bytes.fromhex(req.get("filterHex") or "")
    if filt:
        buf = ctypes.create_string_buffer(filt, len(filt))
        prog = _SockFprog(len(filt) // 8, ctypes.cast(buf, ctypes.c_void_p))
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0),
               "seccomp")


def _child(req, fds, report_w, runtime):
    # C: in the sandbox's cgroup (writing "0" moves only this thread: no RCU-synchronised lock)
    # and, for our children, its pid namespace.
    for f in req.get("cgroupFiles") or []:
        with open(f, "w") as fh:
            fh.write("0")
    ns = dict(zip(req["nsTypes"], fds[2:]))
    if "pid" in ns:
        _check(_libc.setns(ns["pid"], 0), "setns pid")
    r, w = os.pipe()
    # G2 tells us its pid with SCM_CREDENTIALS: the kernel translates it into our (the host's)
    # pid namespace.
    cs, gs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    cs.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    pid1 = os.fork()
    if pid1 == 0:
        # G1, pid namespace of the sandbox. Fork once more and leave, so that the runtime (G2) is
        # orphaned *inside* that namespace and adopted by the sandbox's init (the reaper of an
        # orphan is its dead parent's namespace's init; ours, C's, is the host's), exactly like
        # a command the init started itself.
        try:
            if os.fork() != 0:
                os._exit(0)
        except BaseException as e:  # noqa: B902 (e.g. EAGAIN: the sandbox's pids.max)
            os.write(w, ("fork the runtime in the sandbox: %r" % (e,)).encode())
            os._exit(127)
        os.close(r)
        os.close(report_w)
        cs.close()
        try:
            gs.sendmsg([b"p"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS,
                                 struct.pack("3i", os.getpid(), os.getuid(), os.getgid()))])
            gs.close()
            _become_sandboxed(req, fds, w)
        except BaseException as e:  # noqa: B902
            try:
                os.write(w, ("%r" % (e,)).encode())
            finally:
                os._exit(127)
        os.close(w)
        argv = req.get("argv")
        if argv:
            sys.argv = list(argv)
            import runpy
            try:
                runpy.run_path(argv[0], run_name="__main__")
            except SystemExit as e:
                os._exit(e.code if isinstance(e.code, int) else 1)
            os._exit(0)
        try:
            runtime.main()
        finally:
            os._exit(1)
    os.close(w)
    gs.close()
    os.waitpid(pid1, 0)
    # The error pipe first: its EOF comes once G2 is set up or gone (and G1 always ends), while a
    # datagram socket never sees EOF, so a blocking read of G2's message would wait forever for
    # a G2 that died (or was never forked) before sending it. G2 sends before it closes w.
    err = _read_to_eof(r)
    pid = None
    try:
        _, anc, _, _ = cs.recvmsg(1, socket.CMSG_SPACE(12), socket.MSG_DONTWAIT)
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", data[:12])[0]
    except OSError:  # BlockingIOError included: G2 never sent
        pid = None
    if not err and not pid:
        err = b"the runtime did not report its pid"
    msg = {"error": err.decode(errors="replace")} if err else {"pid": pid}
    os.write(report_w, json.dumps(msg).encode())
    os._exit(0)


def main():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)  # the worker is already gone
    runtime = _load_runtime()
    ctl = socket.socket(fileno=3)
    # Everything imported so far is shared with every child; keep the collector off those pages.
    gc.collect()
    gc.freeze()
    while True:
        try:
            msg, anc, _, _ = ctl.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
        except InterruptedError:
            continue
        if not msg:
            os._exit(0)
        fds = []
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.extend(int.from_bytes(data[i:i + 4], sys.byteorder)
                           for i in range(0, len(data) - len(data) % 4, 4))
        try:
            req = json.loads(msg)
            rr, rw = os.pipe()
            pid = os.fork()
            if pid == 0:
                # C must not outlive the template (a fork does not inherit PDEATHSIG); G1 and G2
                # leave C on their own, G2 into the sandbox's pid namespace.
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() == 1:  # the template died before the prctl
                    os._exit(1)
                os.close(rr)
                ctl.detach()
                try:
                    _child(req, fds, rw, runtime)
                except BaseException as e:  # noqa: B902
                    os.write(rw, json.dumps({"error": repr(e)}).encode())
                os._exit(0)
            os.close(rw)
            answer = _read_to_eof(rr)
            os.close(rr)
            os.waitpid(pid, 0)
            if not answer:
                answer = b'{"error": "template child died"}'
        except Exception as e:  # a bad request must not end the template
            answer = json.dumps({"error": repr(e)}).encode()
        finally:
            for fd in fds:
                os.close(fd)
        ctl.send(answer)


if __name__ == "__main__":
    main()
