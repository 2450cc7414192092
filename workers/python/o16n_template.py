"""o16n Python worker template: a warmed interpreter that forks workers on request.

The server starts `o16n_worker.py --template` in a template sandbox: the operating system's
view that every worker gets, plus the compute node's working directories at a path of their
own, with the capabilities needed to build a worker's sandbox (the template is root there and
runs no user code). The template imports the preloaded packages once and then waits on its
control socket (descriptor 0, a Unix sequenced-packet socket). Each request names a working
directory, a user id, limits and whether the network is on, and carries four descriptors: the
worker's stdin, stdout and stderr pipes and a lifeline whose other end only the server holds;
when the network is on, a fifth: the network namespace the server prepared for the worker
(outbound only, see crates/runtime/src/egress.rs).

For each request the template forks a keeper process, which
  * becomes the leader of a new session (the server interrupts and kills workers by group),
  * unshares the mount, PID, IPC and UTS namespaces, joins the prepared network namespace
    (or, when the network is off, unshares one with loopback only) and forks the worker,
    PID 1 of its new PID namespace,
  * then gives up every capability but CAP_KILL (it only signals its worker), waits for the
    worker, kills it when the lifeline closes (the server let it go or died), and exits the way
    the worker ended so that the template can report it.
The worker builds its sandbox before any user code runs: private mounts, a fresh `/proc`,
`/tmp`, `/dev/shm` and pseudo-terminals, its working directory at its home and no other, its
host name, limits, its own user and group id without supplementary groups, no capabilities
(bounding, ambient and inheritable sets cleared) and `no_new_privs`; a worker of a named
environment then puts that environment's packages first (the template imports nothing of an
environment, whose packages come from users). It then returns to `o16n_worker.py`, which
talks the worker protocol on descriptors 0 and 1 as a spawned worker.
Any failure before that ends the worker with a message on its stderr: it never runs code
half-isolated.

The template stays single-threaded, so no lock is held by another thread when it forks, and
children share nothing mutable with it or each other: the control socket is closed in them,
and what a worker writes to its memory is its own copy.

Messages to the server are JSON objects: `ready` once the imports are done, `forked` (with the
keeper's pid) or `fork_failed` per request, and `exited` with the keeper's exit code or signal.
"""

import ctypes
import errno
import fcntl
import gc
import json
import os
import resource
import select
import signal
import socket
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
CAP_KILL = 5
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

MAX_REQUEST_BYTES = 64 * 1024
# The worker's stdin, stdout and stderr, and the lifeline; a request whose network is on brings
# its network namespace too.
DESCRIPTORS_PER_REQUEST = 4
MAX_DESCRIPTORS_PER_REQUEST = 5
# How a worker ends when its sandbox cannot be built (EX_SOFTWARE).
SANDBOX_FAILURE_EXIT = 70

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def _check(result, what):
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, "%s: %s" % (what, os.strerror(number)))


def _encode(path):
    return None if path is None else os.fsencode(path)


def _mount(source, target, kind, flags, data=None):
    _check(_libc.mount(_encode(source), _encode(target), _encode(kind), flags, _encode(data)),
           "mount %s on %s" % (kind or source, target))


def _unmount(target):
    _check(_libc.umount2(_encode(target), MNT_DETACH), "unmount %s" % target)


def _prctl(option, argument, second=0):
    _check(_libc.prctl(option, argument, second, 0, 0), "prctl %d" % option)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _clear_capabilities():
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _last_capability():
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        return int(handle.read())


def _loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


# --- In the worker: its sandbox -----------------------------------------------------------

def enter_sandbox(request, last_capability):
    """Builds the worker's sandbox in the new namespaces this process is PID 1 of."""
    home = request["home"]
    # Nothing mounted here may reach the template's view or another worker's.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _unmount("/proc")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Sized: these live in memory that no address-space limit counts.
    for shared, options in (("/tmp", request["tmp_options"]), ("/dev/shm", request["shm_options"])):
        _mount("tmpfs", shared, "tmpfs", MS_NOSUID | MS_NODEV, options)
    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=620")
    _mount(request["workdir"], home, None, MS_BIND)
    _unmount(request["work_view"])
    socket.sethostname(request["hostname"])
    if not request["network"]:
        _loopback_up()
    os.chdir(home)
    for name, value in request["limits"].items():
        if value:
            limit = getattr(resource, "RLIMIT_" + name.upper())
            resource.setrlimit(limit, (value, value))
    # The bounding set can only be emptied while the capability to do so is still held.
    for capability in range(last_capability + 1):
        _prctl(PR_CAPBSET_DROP, capability)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    uid = request["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    # Leaving root clears the permitted and effective sets; the inheritable set goes here.
    os.setresuid(uid, uid, uid)
    _clear_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # A change of user makes a process undumpable, which would leave `/proc/self` (and the
    # `/dev/fd` links through it) to root; a spawned worker is dumpable after its `exec`.
    _prctl(PR_SET_DUMPABLE, 1)
    if (os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid)
            or os.getgroups()):
        raise OSError(errno.EPERM, "the worker's identity did not change")


def enter_environment(environment):
    """Puts a named environment's packages before the default's, as a spawned worker of it has
    them (after the standard library, before the default site directories), processing its
    `.pth` files; run once the worker has left root."""
    import site
    import sys
    defaults = set(site.getsitepackages())
    before = list(sys.path)
    site.addsitedir(environment["packages"])
    added = [entry for entry in sys.path if entry not in before]
    at = next((index for index, entry in enumerate(before) if entry in defaults), len(before))
    sys.path[:] = before[:at] + added + before[at:]
    sys.prefix = sys.exec_prefix = environment["prefix"]
    sys.executable = os.path.join(environment["prefix"], "bin", "python")


def reseed():
    """Gives the worker random state of its own: forked, it would repeat its siblings'."""
    import sys
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


# --- In the keeper: the worker's parent ---------------------------------------------------

def keep_only_kill(last_capability):
    """Leaves the keeper only what it needs of root: signalling its worker, which runs as
    another user id (CAP_KILL)."""
    for capability in range(last_capability + 1):
        if capability != CAP_KILL:
            _prctl(PR_CAPBSET_DROP, capability)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_KILL
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def keep(worker, lifeline, last_capability):
    """Waits for the worker; kills it when the lifeline closes; ends as the worker ended. A
    keeper that cannot give up its other capabilities kills the worker at once: it never keeps
    them."""
    try:
        keep_only_kill(last_capability)
    except OSError:
        os.kill(worker, signal.SIGKILL)
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    os.close(null)
    worker_ended = os.pidfd_open(worker)
    while True:
        ready, _, _ = select.select([lifeline, worker_ended], [], [])
        if worker_ended in ready:
            break
        if not os.read(lifeline, 64):
            os.kill(worker, signal.SIGKILL)
            break
    _, status = os.waitpid(worker, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def fork_worker(control, request, descriptors, last_capability):
    """Forks the keeper; returns its pid in the template and `None` in the worker."""
    keeper = os.fork()
    if keeper:
        return keeper
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        os.setsid()
        # Above the descriptors they are about to take, so that no copy overwrites another.
        moved = [fcntl.fcntl(descriptor, fcntl.F_DUPFD_CLOEXEC, 10) for descriptor in descriptors]
        for descriptor in descriptors:
            os.close(descriptor)
        stdin, stdout, stderr, lifeline = moved[:DESCRIPTORS_PER_REQUEST]
        network = moved[DESCRIPTORS_PER_REQUEST] if request["network"] else None
        for source, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(source, target)
            os.close(source)
        os.set_inheritable(lifeline, False)
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        if network is None:
            flags |= CLONE_NEWNET
        _check(_libc.unshare(flags), "unshare")
        if network is not None:
            _check(_libc.setns(network, CLONE_NEWNET), "join the network namespace")
            os.close(network)
        # The keeper shares the worker's process group, which the server interrupts; it ignores
        # that from before the worker exists, and the worker takes Python's handler back.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker = os.fork()
        if worker:
            keep(worker, lifeline, last_capability)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.close(lifeline)
        enter_sandbox(request, last_capability)
        if request.get("environment"):
            enter_environment(request["environment"])
        reseed()
        return None
    except BaseException as problem:
        try:
            os.write(2, ("o16n template: cannot start the worker in its sandbox: %s\n"
                         % problem).encode("utf-8", "replace"))
        finally:
            os._exit(SANDBOX_FAILURE_EXIT)


def report_exits(control):
    """Reaps ended keepers and tells the server how each ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, exited_message(pid, status))


# --- The template's messages (golden examples in workers/protocol/template.json) -----------

def ready_message(pid):
    return {"type": "ready", "pid": pid}


def forked_message(request_id, pid):
    return {"type": "forked", "id": request_id, "pid": pid}


def fork_failed_message(request_id, error):
    return {"type": "fork_failed", "id": request_id, "error": error}


def exited_message(pid, wait_status):
    message = {"type": "exited", "pid": pid}
    if os.WIFSIGNALED(wait_status):
        message["signal"] = os.WTERMSIG(wait_status)
    else:
        message["code"] = os.waitstatus_to_exitcode(wait_status)
    return message


def _send(control, message):
    control.send(json.dumps(message).encode("utf-8"))


def serve(diagnostics):
    """Forks workers for as long as the server lives (the template dies with it). Returns only
    in a worker."""
    control = socket.socket(fileno=0)
    # Descriptor 0 is the worker's stdin in every child; the socket lives elsewhere here.
    moved = control.detach()
    control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM, fileno=os.dup(moved))
    os.close(moved)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        # A thread could hold a lock (the allocator's, a library's) at the fork, which every
        # worker would then inherit locked forever.
        print("o16n template: %d threads run after the imports; a template must have one "
              "(are BLAS threads limited?)" % threads, file=diagnostics)
        os._exit(SANDBOX_FAILURE_EXIT)
    last_capability = _last_capability()
    # Objects that exist now are never collected again: a collection in a worker would
    # otherwise write to every page of them and undo the sharing with the template.
    gc.freeze()
    signal.signal(signal.SIGCHLD, lambda *_: report_exits(control))
    _send(control, ready_message(os.getpid()))
    while True:
        message, descriptors, _, _ = socket.recv_fds(
            control, MAX_REQUEST_BYTES, MAX_DESCRIPTORS_PER_REQUEST)
        try:
            request = json.loads(message)
            expected = DESCRIPTORS_PER_REQUEST + (1 if request.get("network") else 0)
            if len(descriptors) != expected:
                raise ValueError("a request needs %d descriptors, it brought %d"
                                 % (expected, len(descriptors)))
        except ValueError as problem:
            for descriptor in descriptors:
                os.close(descriptor)
            print("o16n template: bad request: %s" % problem, file=diagnostics)
            _send(control, fork_failed_message(None, str(problem)))
            continue
        # A keeper that ends at once must be reported after it was announced.
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
        try:
            keeper = fork_worker(control, request, descriptors, last_capability)
        except OSError as problem:
            keeper = problem
        if keeper is None:
            return
        for descriptor in descriptors:
            os.close(descriptor)
        if isinstance(keeper, OSError):
            _send(control, fork_failed_message(request.get("id"), str(keeper)))
        else:
            _send(control, forked_message(request.get("id"), keeper))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
