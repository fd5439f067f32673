# Escape probe: attempts to break out of a Stratus sandbox, one named attempt at a time.
#
# Runs two ways:
#   * as a python3 function (handler "probe.handler"): event {"attempt": NAME, ...arguments}
#   * as a script inside any sandbox: python3 probe.py NAME ['{"json": "arguments"}']
# Each attempt returns {"contained": bool, "detail": str}: contained means the attempt failed the
# way a well-isolated sandbox makes it fail. The test harnesses (tests/escape_test.cc through the
# real server, src/sandbox/hardening_test.cc on the backend directly) assert on it.
import ctypes
import errno
import json
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# x86_64 system call numbers.
NR = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "ptrace": 101, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
    "bpf": 321, "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
    "userfaultfd": 323, "unshare": 272, "setns": 308, "clone": 56, "clone3": 435,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "swapon": 167, "swapoff": 168,
    "reboot": 169, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
    "io_uring_setup": 425, "process_vm_readv": 310, "mknodat": 259,
}
CLONE_FLAGS = {
    "newns": 0x00020000, "newcgroup": 0x02000000, "newuts": 0x04000000, "newipc": 0x08000000,
    "newuser": 0x10000000, "newpid": 0x20000000, "newnet": 0x40000000,
}
SIGCHLD = 17


def sys_call(name, *args):
    """Raw system call; returns (result, errno name or '')."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(ctypes.c_long(NR[name]), *cargs)
    e = ctypes.get_errno()
    return r, (errno.errorcode.get(e, str(e)) if r == -1 else "")


def result(contained, detail):
    return {"contained": bool(contained), "detail": detail}


def denied(name, *args, want=("EPERM",)):
    r, e = sys_call(name, *args)
    if r == 0 and name in ("clone",):
        os._exit(0)  # the child of a clone that should have been refused
    return (r == -1 and e in want), "%s -> %s" % (name, e or r)


def all_denied(calls):
    details, ok = [], True
    for call in calls:
        name, args = call[0], call[1:]
        c, d = denied(name, *args)
        ok = ok and c
        details.append(d)
    return result(ok, "; ".join(details))


def status_field(field, pid="self"):
    for line in open("/proc/%s/status" % pid):
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def cmdlines():
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                out[int(p)] = open("/proc/%s/cmdline" % p, "rb").read().replace(b"\0", b" ").decode(
                    "utf-8", "replace")
            except OSError:
                pass
    return out


# ---- attempts -------------------------------------------------------------------------------

def host_processes(a):
    procs = cmdlines()
    markers = a.get("hostMarkers", [])
    # (init's and our own command lines may carry the markers as arguments)
    seen = [c for p, c in procs.items()
            if p not in (1, os.getpid()) and any(m in c for m in markers)]
    init = procs.get(1, "")
    return result(not seen and init.startswith("stratus-sandbox-init") and len(procs) < 16,
                  "pids %s; pid 1 %r; host markers seen: %s" % (sorted(procs), init[:40], seen))


def root_readonly(a):
    details, ok = [], True
    for d in ["/", "/usr", "/usr/bin", "/etc", "/code", "/lib", "/dev", "/proc/sys/kernel",
              "/usr/lib"]:
        try:
            fn = os.path.join(d, ".escape-probe")
            with open(fn, "w") as f:
                f.write("x")
            os.unlink(fn)
            ok = False
            details.append("%s writable" % d)
        except OSError as e:
            details.append("%s %s" % (d, errno.errorcode[e.errno]))
    try:
        os.chmod("/usr/bin/python3", 0o777)
        ok = False
        details.append("chmod /usr/bin/python3 worked")
    except OSError as e:
        details.append("chmod %s" % errno.errorcode[e.errno])
    return result(ok, "; ".join(details))


def read_secret(paths):
    details, ok = [], True
    for p in paths:
        try:
            data = open(p, "rb").read()
            ok = False
            details.append("%s READ (%d bytes)" % (p, len(data)))
        except OSError as e:
            details.append("%s %s" % (p, errno.errorcode[e.errno]))
    return ok, details


def etc_shadow(a):
    ok, details = read_secret(["/etc/shadow", "/etc/gshadow", "/proc/1/root/etc/shadow",
                               "/proc/1/environ"])
    return result(ok and not os.path.exists("/etc/shadow"), "; ".join(details))


def host_secret(a):
    paths = list(a.get("paths", []))
    # ...also by the ways around a mount namespace.
    paths += ["/proc/1/root" + p for p in a.get("paths", [])]
    ok, details = read_secret(paths)
    return result(ok, "; ".join(details))


def mount(a):
    return all_denied([
        ("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        ("mount", b"/usr", b"/tmp", None, 0x1000, None),  # MS_BIND
        ("mount", None, b"/", None, 0x20 | 0x1000, None),  # MS_REMOUNT|MS_BIND: make / writable
        ("umount2", b"/proc/kcore", 2),
        ("umount2", b"/code", 2),
        ("pivot_root", b"/tmp", b"/tmp"),
    ])


def unshare(a):
    return all_denied([("unshare", f) for f in CLONE_FLAGS.values()])


def clone_namespaces(a):
    calls = [("clone", f | SIGCHLD, 0, 0, 0, 0) for f in CLONE_FLAGS.values()]
    res = all_denied(calls)
    # clone3 hides its flags from seccomp: it must not exist at all.
    c, d = denied("clone3", 0, 0, want=("ENOSYS",))
    return result(res["contained"] and c, res["detail"] + "; " + d)


def setns(a):
    details, ok = [], True
    for ns in ["net", "mnt", "pid", "user", "uts", "ipc", "cgroup"]:
        try:
            fd = os.open("/proc/1/ns/" + ns, os.O_RDONLY)
        except OSError as e:
            details.append("open %s %s" % (ns, errno.errorcode[e.errno]))
            continue
        c, d = denied("setns", fd, 0)
        os.close(fd)
        ok = ok and c
        details.append(ns + ": " + d)
    return result(ok, "; ".join(details))


def ptrace(a):
    return all_denied([("ptrace", 0, 0, 0, 0),      # PTRACE_TRACEME
                       ("ptrace", 16, 1, 0, 0),     # PTRACE_ATTACH to init
                       ("ptrace", 0x4206, 1, 0, 0),  # PTRACE_SEIZE
                       ("process_vm_readv", 1, 0, 0, 0, 0, 0)])


def kernel_modules(a):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return all_denied([("init_module", 0, 0, b""), ("finit_module", fd, b"", 0),
                           ("delete_module", b"loop", 0), ("kexec_load", 0, 0, 0, 0),
                           ("kexec_file_load", fd, fd, 0, b"", 0)])
    finally:
        os.close(fd)


def keyctl(a):
    return all_denied([("add_key", b"user", b"escape", b"secret", 6, -2),  # session keyring
                       ("keyctl", 0, -3, 0, 0, 0),  # KEYCTL_GET_KEYRING_ID of the user keyring
                       ("request_key", b"user", b"escape", None, 0)])


def bpf(a):
    buf = ctypes.create_string_buffer(128)
    return all_denied([("bpf", 0, buf, 128), ("perf_event_open", buf, 0, -1, -1, 0),
                       ("userfaultfd", 0)])


def reboot(a):
    return all_denied([("reboot", 0xfee1dead, 672274793, 0x4321FEDC, None),  # POWER_OFF
                       ("swapon", b"/tmp/swap", 0), ("swapoff", b"/tmp/swap")])


def clock(a):
    tv = ctypes.create_string_buffer(16)
    tx = ctypes.create_string_buffer(256)
    return all_denied([("settimeofday", tv, None), ("clock_settime", 0, tv), ("adjtimex", tx)])


def file_handles(a):
    buf = ctypes.create_string_buffer(256)
    return all_denied([("open_by_handle_at", -100, buf, 0),
                       ("name_to_handle_at", -100, b"/code", buf, buf, 0)])


def mknod(a):
    details, ok = [], True
    import stat
    for kind, name in [(stat.S_IFCHR, "char"), (stat.S_IFBLK, "block")]:
        path = "/tmp/escape-" + name
        try:
            os.mknod(path, kind | 0o666, os.makedev(1, 1))  # /dev/mem
            ok = False
            details.append("%s device created" % name)
            os.unlink(path)
        except OSError as e:
            ok = ok and e.errno == errno.EPERM
            details.append("%s %s" % (name, errno.errorcode[e.errno]))
    return result(ok, "; ".join(details))


def raw_sockets(a):
    details, ok = [], True
    for fam, typ, proto, name in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw ip"),
                                  (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6, "raw ip6"),
                                  (socket.AF_PACKET, socket.SOCK_RAW, 0, "packet raw"),
                                  (socket.AF_PACKET, socket.SOCK_DGRAM, 0, "packet dgram")]:
        try:
            socket.socket(fam, typ, proto).close()
            ok = False
            details.append("%s socket created" % name)
        except OSError as e:
            ok = ok and e.errno == errno.EPERM
            details.append("%s %s" % (name, errno.errorcode[e.errno]))
    return result(ok, "; ".join(details))


def proc_kcore(a):
    details, ok = [], True
    for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kmsg"]:
        try:
            data = open(p, "rb").read(4096)
            if data:
                ok = False
            details.append("%s read %d bytes" % (p, len(data)))
        except OSError as e:
            details.append("%s %s" % (p, errno.errorcode[e.errno]))
    return result(ok, "; ".join(details))


def sysrq_trigger(a):
    try:
        with open("/proc/sysrq-trigger", "w") as f:
            f.write("h")  # help: harmless, but proves the write got through
        return result(False, "/proc/sysrq-trigger written")
    except OSError as e:
        return result(True, "/proc/sysrq-trigger %s" % errno.errorcode[e.errno])


def proc_sys_readonly(a):
    details, ok = [], True
    for p in ["/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches",
              "/proc/sys/kernel/core_pattern", "/proc/sys/net/ipv4/ip_forward"]:
        try:
            with open(p, "w") as f:
                f.write("1")
            ok = False
            details.append("%s written" % p)
        except OSError as e:
            details.append("%s %s" % (p, errno.errorcode[e.errno]))
    return result(ok, "; ".join(details))


def no_capabilities(a):
    fields = {f: status_field(f) for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                            "NoNewPrivs", "Seccomp", "Uid", "Gid"]}
    zero = all(int(fields[f], 16) == 0 for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
    ok = zero and fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    ok = ok and fields["Uid"].split()[0] != "0"
    return result(ok, json.dumps(fields))


def user_namespace(a):
    uid_map = open("/proc/self/uid_map").read().split()
    cgroup = open("/proc/self/cgroup").read()
    # Root inside is a range of the host, not the host's root.
    ok = len(uid_map) == 3 and uid_map[0] == "0" and uid_map[1] != "0"
    # The cgroup namespace hides the host's cgroup paths.
    ok = ok and all(line.rsplit(":", 1)[-1] == "/" for line in cgroup.split())
    return result(ok, "uid_map %s; cgroup %r" % (uid_map, cgroup))


def dev_allowlist(a):
    allowed = {"null", "zero", "full", "random", "urandom", "tty", "shm", "fd", "stdin", "stdout",
               "stderr"}
    entries = set(os.listdir("/dev"))
    return result(entries <= allowed and not os.path.exists("/sys/class"),
                  "dev %s; /sys %s" % (sorted(entries), os.path.exists("/sys")))


def connect_fails(host, port, timeout=2.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return False, "%s:%d CONNECTED" % (host, port)
    except OSError as e:
        return True, "%s:%d %s" % (host, port, errno.errorcode.get(e.errno, str(e)))
    finally:
        s.close()


def network(a):
    details, ok = [], True
    for hp in a.get("targets", []):
        host, port = hp.rsplit(":", 1)
        c, d = connect_fails(host, int(port))
        ok = ok and c
        details.append(d)
    ifaces = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
    ok = ok and ifaces == ["lo"]
    details.append("interfaces %s" % ifaces)
    return result(ok, "; ".join(details))


def fork_bomb(a):
    children, err = [], ""
    limit = a.get("max", 4096)
    try:
        while len(children) < limit:
            pid = os.fork()
            if pid == 0:
                os.pause() if hasattr(os, "pause") else None
                os._exit(0)
            children.append(pid)
    except OSError as e:
        err = errno.errorcode[e.errno]
    for pid in children:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except OSError:
            pass
    return result(err == "EAGAIN" and len(children) < limit,
                  "forked %d children before %s" % (len(children), err or "giving up"))


def tmp_fill(a):
    limit = a.get("limitBytes", 1 << 30)
    written, err = 0, ""
    for d in ["/tmp", "/dev/shm"]:
        path = os.path.join(d, "escape-fill")
        n = 0
        try:
            with open(path, "wb") as f:
                chunk = b"x" * (1 << 20)
                while n <= 2 * limit:
                    f.write(chunk)
                    f.flush()
                    n += len(chunk)
        except OSError as e:
            err += "%s %s after %d MB; " % (d, errno.errorcode[e.errno], n >> 20)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        written = max(written, n)
    return result(written <= limit and err.count("ENOSPC") == 2, err)


def memory_bomb(a):
    hog = []
    while True:
        hog.append(bytearray(16 << 20))  # touched: bytearray zero-fills


def plant(a):
    """Leaves a marker in this sandbox's /tmp and /dev/shm (for other_tenant)."""
    for d in ["/tmp", "/dev/shm"]:
        with open(os.path.join(d, a["marker"]), "w") as f:
            f.write(a["marker"])
    return result(True, "planted in %s" % os.listdir("/tmp"))


def other_tenant(a):
    marker, details, ok = a["marker"], [], True
    for d in ["/tmp", "/dev/shm", "/code"]:
        names = os.listdir(d)
        if marker in names or any(n in names for n in a.get("codeFiles", [])):
            ok = False
        details.append("%s %s" % (d, names))
    for p in a.get("paths", []):
        try:
            os.listdir(p) if os.path.isdir(p) else open(p, "rb").read()
            ok = False
            details.append("%s READ" % p)
        except OSError as e:
            details.append("%s %s" % (p, errno.errorcode[e.errno]))
    return result(ok, "; ".join(details))


ATTEMPTS = {f.__name__: f for f in [
    host_processes, root_readonly, etc_shadow, host_secret, mount, unshare, clone_namespaces,
    setns, ptrace, kernel_modules, keyctl, bpf, reboot, clock, file_handles, mknod, raw_sockets,
    proc_kcore, sysrq_trigger, proc_sys_readonly, no_capabilities, user_namespace, dev_allowlist,
    network, fork_bomb, tmp_fill, memory_bomb, plant, other_tenant]}


def run(name, args):
    try:
        return ATTEMPTS[name](args)
    except Exception as e:  # an unexpected failure is not a containment proof
        return result(False, "probe error: %r" % e)


def handler(event, context):
    if isinstance(event, (bytes, str)):
        event = json.loads(event)
    return run(event["attempt"], event)


if __name__ == "__main__":
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(run(sys.argv[1], args)))
