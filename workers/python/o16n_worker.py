"""o16n Python worker: runs user code for one o16n compute node.

The server starts this script with the pool's interpreter and talks to it over the process's
original stdin and stdout, which this script moves to private file descriptors before any user
code runs. File descriptors 1 and 2 are then pointed at a pipe that is drained into the console
output of the current execution, so nothing user code prints (Python-level, C-level or from a
subprocess) can reach the protocol channel.

Frames are `[u32 total][u32 header_len][header JSON][blob]`, big-endian; `total` counts
everything after itself (protocol version 2). The first frame is the worker's `hello`. Every
request gets exactly one answer of the type that request expects (`executed` for `execute`,
`object_names` for `list_objects`, ...) or `failed`; during `execute` and `consume`, `console`
frames may come first. The frames in `workers/protocol/` are the golden examples.
"""

import builtins
import io
import json
import math
import os
import signal
import struct
import sys
import threading
import time
import traceback
import types

PROTOCOL_VERSION = 2
CONSOLE_FLUSH_SECONDS = 0.05
# The largest console message: output is sent in pieces of at most this many bytes, so that a
# single huge print never becomes a huge message.
CONSOLE_CHUNK_BYTES = 64 * 1024


# --- The system-call filter ---------------------------------------------------------------

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
# The kernel's limit on the instructions of one filter program.
MAX_FILTER_INSTRUCTIONS = 4096


def install_syscall_filters():
    """Installs the server's system-call filters (`crates/runtime/src/seccomp.rs`: classic BPF
    programs in hex, comma-separated) before any user code runs. A worker that cannot install
    them ends here: it never runs code unfiltered. Outside a sandbox there are none."""
    import ctypes
    filters = os.environ.pop("O16N_SYSCALL_FILTERS", "")
    if not filters:
        return

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]

    def prctl(what, option, argument, second=0):
        if libc.prctl(option, argument, second, 0, 0) != 0:
            number = ctypes.get_errno()
            raise OSError(number, "cannot %s: %s" % (what, os.strerror(number)))

    prctl("set no_new_privs", PR_SET_NO_NEW_PRIVS, 1)
    for text in filters.split(","):
        program = bytes.fromhex(text)
        if not program or len(program) % 8 or len(program) // 8 > MAX_FILTER_INSTRUCTIONS:
            raise ValueError("a system-call filter is not a whole BPF program")
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
        prctl("install the system-call filter", PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
              ctypes.addressof(fprog))


# --- The protocol channel -----------------------------------------------------------------

class Channel:
    """Frames over two private file descriptors; `send` may be called from several threads."""

    def __init__(self, read_fd, write_fd):
        self._reader = os.fdopen(read_fd, "rb", buffering=1 << 16)
        self._write_fd = write_fd
        self._lock = threading.Lock()

    def receive(self):
        prefix = self._read_exactly(4)
        if prefix is None:
            return None, b""
        (total,) = struct.unpack(">I", prefix)
        body = self._read_exactly(total)
        if body is None or total < 4:
            return None, b""
        (header_len,) = struct.unpack(">I", body[:4])
        header = json.loads(body[4:4 + header_len].decode("utf-8"))
        return header, body[4 + header_len:]

    def send(self, header, blob=b""):
        encoded = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
        frame = struct.pack(">II", 4 + len(encoded) + len(blob), len(encoded)) + encoded + blob
        with self._lock:
            view = memoryview(frame)
            while view:
                written = os.write(self._write_fd, view)
                view = view[written:]

    def _read_exactly(self, count):
        data = self._reader.read(count)
        if not data or len(data) < count:
            return None
        return data


# --- Console capture ----------------------------------------------------------------------

class Console:
    """Collects what the running execution prints and streams it to the server.

    At most `limit` bytes of text are kept per execution (the server's limit,
    `O16N_MAX_CONSOLE_BYTES`); what comes after is only counted, and the count goes to the
    server, which says how much was dropped. So neither this worker nor the server holds more
    than that of an execution's output, however much user code prints.
    """

    def __init__(self, channel, pipe_read_fd, limit):
        self._channel = channel
        self._pipe = pipe_read_fd
        os.set_blocking(self._pipe, False)
        self._lock = threading.Lock()
        self._pending = []
        self._limit = limit
        self._kept = 0
        self._dropped = 0
        self.active = False
        threading.Thread(target=self._flush_loop, name="o16n-console", daemon=True).start()

    def write(self, text):
        if text:
            with self._lock:
                # What a subprocess or C code wrote to the descriptors came first; keep order.
                self._drain_pipe()
                self._keep(text)

    def _keep(self, text):
        """Keeps what fits in the execution's limit, counts the rest; the caller holds the lock."""
        # Once the limit is reached (by a cut, if anything was dropped) the rest only counts.
        if self._kept >= self._limit:
            self._dropped += len(text.encode("utf-8", errors="replace"))
            return
        encoded = text.encode("utf-8", errors="replace")
        room = self._limit - self._kept
        if len(encoded) > room:
            self._dropped += len(encoded) - room
            # A character cut in two becomes one replacement character.
            text = encoded[:room].decode("utf-8", errors="ignore")
            encoded = encoded[:room]
        self._kept += len(encoded)
        self._pending.append(text)

    def _drain_pipe(self):
        """Moves what reached file descriptors 1 and 2 into the buffer; the caller holds the lock."""
        chunks = []
        while True:
            try:
                data = os.read(self._pipe, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        if chunks:
            self._keep(b"".join(chunks).decode("utf-8", errors="replace"))

    def flush(self):
        """Sends everything collected so far (called at the end of every execution)."""
        with self._lock:
            self._drain_pipe()
            text = "".join(self._pending)
            self._pending.clear()
            dropped, self._dropped = self._dropped, 0
        if not self.active:
            return
        # At most CONSOLE_CHUNK_BYTES per message: 16 Ki characters of up to 4 bytes each.
        step = CONSOLE_CHUNK_BYTES // 4
        for start in range(0, len(text), step):
            self._channel.send({"type": "console", "text": text[start:start + step]})
        if dropped:
            self._channel.send({"type": "console", "text": "", "dropped": dropped})

    def begin(self):
        """Starts an execution's console: nothing of before it, the whole limit ahead."""
        self.discard()
        with self._lock:
            self._kept = 0
            self._dropped = 0
        self.active = True

    def discard(self):
        with self._lock:
            self._drain_pipe()
            self._pending.clear()

    def _flush_loop(self):
        while True:
            time.sleep(CONSOLE_FLUSH_SECONDS)
            if self.active:
                try:
                    self.flush()
                except OSError:
                    return
            else:
                # Output produced between executions (e.g. by a background thread the user
                # started) belongs to no execution; keep the pipe from filling up.
                self.discard()


class ConsoleStream(io.TextIOBase):
    """What `sys.stdout` and `sys.stderr` become: writes go to the console buffer."""

    def __init__(self, console, fileno):
        self._console = console
        self._fileno = fileno

    def write(self, text):
        self._console.write(str(text))
        return len(text)

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fileno

    @property
    def encoding(self):
        return "utf-8"


# --- Values between JSON and Python -------------------------------------------------------

class NoJsonForm(Exception):
    pass


def to_json(value, name):
    """Converts a Python value to something `json.dumps` accepts, or raises NoJsonForm."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if pd is not None and isinstance(value, pd.DataFrame):
        return {str(column): to_json(value[column].tolist(), name) for column in value.columns}
    if pd is not None and isinstance(value, pd.Series):
        return to_json(value.tolist(), name)
    if np is not None:
        if isinstance(value, np.generic):
            return to_json(value.item(), name)
        if isinstance(value, np.ndarray):
            return to_json(value.tolist(), name)
    if isinstance(value, dict):
        return {str(key): to_json(item, name) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item, name) for item in value]
    if pd is not None and value is pd.NA:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise NoJsonForm(
        "`%s` is a %s, which has no JSON form" % (name, type(value).__module__ + "." + type(value).__qualname__)
    )


def from_declared(kind, value):
    """Turns a JSON input into the Python type the reference maps its declared type to."""
    if value is None:
        return None
    if kind == "integer":
        return int(value)
    if kind == "numeric":
        return float(value)
    if kind == "logical":
        return bool(value)
    if kind == "character":
        return str(value)
    import numpy
    if kind == "vector":
        return numpy.array(value)
    if kind == "matrix":
        return numpy.matrix(value)
    if kind == "data.frame":
        import pandas
        return pandas.DataFrame(value)
    return value


def to_declared(kind, value, name):
    """Turns an output into the JSON form of its declared type, or raises NoJsonForm."""
    if value is None:
        return None
    try:
        if kind == "integer":
            return int(value)
        if kind == "numeric":
            return float(value) if math.isfinite(float(value)) else None
        if kind == "logical":
            return bool(value)
        if kind == "character":
            return str(value)
    except (TypeError, ValueError) as problem:
        raise NoJsonForm("`%s` should be %s but %s" % (name, kind, problem))
    return to_json(value, name)


class Service:
    """A service loaded into this worker: its namespace after initCode, and its directory."""

    def __init__(self, key, directory):
        self.key = key
        self.directory = directory
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        self.namespace = self.module.__dict__


# --- The worker ---------------------------------------------------------------------------

class Worker:
    def __init__(self, channel, console):
        self.channel = channel
        self.console = console
        self.executing = False
        # The script's own module stays referenced so that its globals outlive the swap below.
        self.worker_module = sys.modules["__main__"]
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        # User code runs in a fresh `__main__` module so that dill, which pickles the globals of
        # `__main__` functions by reference, finds the user namespace when it loads them.
        sys.modules["__main__"] = main
        self.session_module = main
        self.namespace = main.__dict__
        self.services = {}
        self.compiled = {}

    def serve(self):
        while True:
            request, blob = self.channel.receive()
            if request is None:
                return
            kind = request.get("type")
            if kind == "shutdown":
                self.answer("done")
                return
            handler = getattr(self, "do_" + str(kind), None)
            if handler is None:
                self.fail("unknown request type %r" % kind)
                continue
            try:
                handler(request, blob)
            except Exception as error:  # A bug in the worker must not kill it.
                self.fail("worker error: %s" % error)

    def answer(self, kind, payload=None, blob=b""):
        """Sends the answer of type `kind` to the current request."""
        message = {"type": kind}
        message.update(payload or {})
        self.channel.send(message, blob)

    def fail(self, message, kind="bad_request"):
        """Answers the current request with a failure of the request itself."""
        self.channel.send({"type": "failed", "kind": kind, "error": message})

    def on_interrupt(self, signum, frame):
        if self.executing:
            raise KeyboardInterrupt()

    # Requests --------------------------------------------------------------------------

    def do_execute(self, request, blob):
        for parameter in request.get("inputs") or []:
            self.namespace[parameter["name"]] = parameter.get("value")
        success, error = self.run_code(request.get("code") or "", self.namespace)
        outputs = []
        if success:
            for name in request.get("outputs") or []:
                try:
                    value = to_json(self.namespace[name], name) if name in self.namespace else None
                except NoJsonForm as problem:
                    success, error = False, str(problem)
                    break
                outputs.append({"name": name, "value": value})
        self.answer("executed", {"success": success, "error": error, "outputs": outputs if success else []})

    def compile(self, code):
        """Compiles code, remembering recent results: a service runs the same code every time."""
        compiled = self.compiled.get(code)
        if compiled is None:
            compiled = compile(code, "<o16n>", "exec")
            if len(self.compiled) >= 64:
                self.compiled.clear()
            self.compiled[code] = compiled
        return compiled

    def run_code(self, code, namespace):
        """Runs code in a namespace; returns (success, error message)."""
        self.console.begin()
        self.executing = True
        try:
            exec(self.compile(code), namespace)
            return True, ""
        except KeyboardInterrupt:
            return False, "the execution was cancelled"
        except SyntaxError:
            return False, "".join(traceback.format_exception_only(*sys.exc_info()[:2]))
        except BaseException:
            kind, value, tb = sys.exc_info()
            # Drop this function's own frame so the traceback starts in the user's code.
            return False, "".join(traceback.format_exception(kind, value, tb.tb_next))
        finally:
            self.executing = False
            # The interpreter's own writers on descriptors 1 and 2 (`sys.__stdout__`) buffer
            # what user code writes to them directly; it belongs to this execution's console.
            for stream in (sys.stdout, sys.__stdout__, sys.__stderr__):
                try:
                    stream.flush()
                except Exception:
                    pass
            self.console.flush()
            self.console.active = False

    # Services ----------------------------------------------------------------------------

    def do_load_service(self, request, blob):
        import dill
        # The directory is relative to the working directory, where the worker stands between
        # requests.
        service = Service(request["key"], os.path.abspath(request["directory"]))
        previous = os.getcwd()
        sys.modules["__main__"] = service.module
        try:
            os.chdir(service.directory)
            if blob:
                objects = dill.loads(blob)
                if isinstance(objects, dict):
                    service.namespace.update(objects)
            init_code = request.get("init_code") or ""
            success, error = self.run_code(init_code, service.namespace) if init_code else (True, "")
        except BaseException as problem:
            success, error = False, "the service cannot be loaded: %s: %s" % (type(problem).__name__, problem)
        finally:
            sys.modules["__main__"] = self.session_module
            os.chdir(previous)
        if not success:
            return self.fail("initCode failed: " + error, "load_failed")
        self.services[service.key] = service
        self.answer("service_loaded")

    def do_unload_service(self, request, blob):
        self.services.pop(request["key"], None)
        self.answer("done")

    def do_consume(self, request, blob):
        service = self.services.get(request["key"])
        if service is None:
            return self.fail("service not loaded", "not_loaded")
        namespace = service.namespace
        saved_bindings = dict(namespace)
        previous = os.getcwd()
        sys.modules["__main__"] = service.module
        try:
            os.chdir(service.directory)
            files_before = {entry.name: entry.stat().st_mtime_ns for entry in os.scandir(".") if entry.is_file()}
            for parameter in request.get("inputs") or []:
                namespace[parameter["name"]] = from_declared(parameter["type"], parameter.get("value"))
            success, error = self.run_code(request.get("code") or "", namespace)
            outputs = {}
            if success:
                for parameter in request.get("outputs") or []:
                    name = parameter["name"]
                    try:
                        outputs[name] = to_declared(parameter["type"], namespace.get(name), name)
                    except NoJsonForm as problem:
                        success, error = False, str(problem)
                        outputs = {}
                        break
            files_after = {entry.name: entry.stat().st_mtime_ns for entry in os.scandir(".") if entry.is_file()}
            changed = sorted(name for name, stamp in files_after.items() if files_before.get(name) != stamp)
            # Declared output files travel as raw bytes, one after the other in the blob.
            output_files = []
            contents = []
            for name in request.get("output_files") or []:
                if name in files_after and "/" not in name:
                    with open(name, "rb") as handle:
                        content = handle.read()
                    output_files.append({"name": name, "size": len(content)})
                    contents.append(content)
                else:
                    output_files.append({"name": name, "size": None})
            # Files this request created belong to it alone.
            for name in files_after:
                if name not in files_before:
                    os.remove(name)
        finally:
            namespace.clear()
            namespace.update(saved_bindings)
            sys.modules["__main__"] = self.session_module
            os.chdir(previous)
        self.answer("consumed", {
            "success": success,
            "error": error,
            "outputs": outputs,
            "output_files": output_files,
            "changed_files": changed,
        }, b"".join(contents))

    def user_names(self, include_modules):
        return [
            name for name, value in self.namespace.items()
            if not name.startswith("__") and (include_modules or not isinstance(value, types.ModuleType))
        ]

    def do_list_objects(self, request, blob):
        self.answer("object_names", {"names": sorted(self.user_names(include_modules=False))})

    def do_get_object(self, request, blob):
        import dill
        name = request["name"]
        if name not in self.namespace or name.startswith("__"):
            return self.fail("object `%s` not found" % name, "not_found")
        try:
            data = dill.dumps(self.namespace[name])
        except Exception as problem:
            return self.fail("object `%s` cannot be serialized: %s" % (name, problem))
        self.answer("object", {}, data)

    def do_put_object(self, request, blob):
        import dill
        try:
            value = dill.loads(blob)
        except BaseException as problem:
            return self.fail("the object cannot be unpickled: %s: %s" % (type(problem).__name__, problem))
        self.namespace[request["name"]] = value
        self.answer("done")

    def do_delete_object(self, request, blob):
        name = request["name"]
        if name not in self.namespace or name.startswith("__"):
            return self.fail("object `%s` not found" % name, "not_found")
        del self.namespace[name]
        self.answer("done")

    def do_save_workspace(self, request, blob):
        import dill
        objects = {}
        for name in self.user_names(include_modules=True):
            value = self.namespace[name]
            try:
                dill.dumps(value)
            except Exception as problem:
                return self.fail("object `%s` cannot be serialized: %s" % (name, problem))
            objects[name] = value
        self.answer("workspace", {}, dill.dumps(objects))

    def do_load_workspace(self, request, blob):
        import dill
        try:
            objects = dill.loads(blob)
        except BaseException as problem:
            return self.fail("the workspace cannot be unpickled: %s" % problem)
        if not isinstance(objects, dict):
            return self.fail("the workspace is not a mapping of names to objects")
        self.namespace.update(objects)
        self.answer("workspace_loaded", {"names": sorted(objects)})


def preload(diagnostics):
    """Imports the modules every session and service needs, so that no request pays for them."""
    for module in (os.environ.get("O16N_PRELOAD") or "").split(","):
        if module.strip():
            try:
                __import__(module.strip())
            except Exception as problem:
                print("o16n worker: cannot preload %s: %s" % (module, problem), file=diagnostics)


def main():
    # A write past the file-size limit (set by the server, with the other limits, before this
    # script started) then fails with an OSError in user code instead of killing the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    arguments = sys.argv[1:]
    template = arguments[-1:] == ["--template"]
    if template:
        del arguments[-1]
    # A worker of a named environment sees that environment's packages first and the
    # default environment's after them: the server names the default's prefix.
    if len(arguments) == 2 and arguments[0] == "--base-prefix":
        import site
        site.addsitedir(os.path.join(
            arguments[1], "lib", "python%d.%d" % sys.version_info[:2], "site-packages"))
    del sys.argv[1:]
    if template:
        # Warmed once here; `serve` returns in each forked worker, sandboxed, with the worker's
        # own pipes as descriptors 0, 1 and 2.
        preload(sys.stderr)
        import o16n_template
        o16n_template.serve(sys.stderr)
    install_syscall_filters()

    # Take the protocol channel away from fds 0 and 1 before anything else can write there.
    channel = Channel(os.dup(0), os.dup(1))
    diagnostics = os.fdopen(os.dup(2), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    pipe_read, pipe_write = os.pipe()
    os.dup2(pipe_write, 1)
    os.dup2(pipe_write, 2)
    os.close(pipe_write)
    console = Console(channel, pipe_read,
                      int(os.environ.get("O16N_MAX_CONSOLE_BYTES") or 1024 * 1024))
    sys.stdin = open(os.devnull)
    sys.stdout = ConsoleStream(console, 1)
    sys.stderr = ConsoleStream(console, 2)
    # Warm-up before the worker joins the pool (nothing left to do in a forked worker).
    preload(diagnostics)
    console.discard()

    worker = Worker(channel, console)
    signal.signal(signal.SIGINT, worker.on_interrupt)
    channel.send({
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "language": "python",
        "runtime_version": "%d.%d.%d" % sys.version_info[:3],
    })
    worker.serve()
    # Nothing of the worker outlives it (its working directory is discarded), so the
    # interpreter's teardown is skipped: it would touch every object, which in a worker forked
    # from a template copies every page it shares.
    os._exit(0)


if __name__ == "__main__":
    main()
