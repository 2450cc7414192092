"""The Python worker against the golden frames of `workers/protocol/`, which the Rust host's
and the R worker's tests read too: the worker's framing reads and writes them byte for byte,
and its handlers answer each request with the kind of message the protocol names for it.
"""

import json
import os
import pathlib
import re
import resource
import struct
import sys
import types

import pytest

HERE = pathlib.Path(__file__).resolve().parent
GOLDEN = HERE.parent / "protocol"
sys.path.insert(0, str(HERE))

import o16n_worker  # noqa: E402


def golden_cases():
    return json.loads((GOLDEN / "frames.json").read_text())


def frame_bytes(name):
    return (GOLDEN / (name + ".frame")).read_bytes()


def pipe_channel():
    """A channel whose reads come from one pipe and whose writes go to another."""
    incoming_read, incoming_write = os.pipe()
    outgoing_read, outgoing_write = os.pipe()
    return o16n_worker.Channel(incoming_read, outgoing_write), incoming_write, outgoing_read


def read_all(fd):
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def parse(data):
    """Splits bytes into (header, blob) frames."""
    frames = []
    while data:
        (total,) = struct.unpack(">I", data[:4])
        body, data = data[4:4 + total], data[4 + total:]
        (header_len,) = struct.unpack(">I", body[:4])
        frames.append((json.loads(body[4:4 + header_len]), body[4 + header_len:]))
    return frames


@pytest.mark.parametrize("case", golden_cases(), ids=lambda case: case["name"])
def test_the_worker_reads_and_writes_every_golden_frame(case):
    channel, incoming, outgoing = pipe_channel()
    golden = frame_bytes(case["name"])
    blob = bytes.fromhex(case["blob_hex"])

    os.write(incoming, golden)
    header, read_blob = channel.receive()
    channel.send(case["header"], blob)

    assert header == case["header"]
    assert read_blob == blob
    assert read_all(outgoing) == golden


class Recorder:
    """Stands for the channel: keeps what the worker sends."""

    def __init__(self):
        self.sent = []

    def send(self, header, blob=b""):
        self.sent.append((header, blob))


@pytest.fixture
def worker():
    saved_main = sys.modules["__main__"]
    read_fd, write_fd = os.pipe()
    recorder = Recorder()
    console = o16n_worker.Console(recorder, read_fd, 100_000)
    worker = o16n_worker.Worker(recorder, console)
    try:
        yield worker, recorder
    finally:
        sys.modules["__main__"] = saved_main
        os.close(write_fd)


def request_of(name):
    case = next(case for case in golden_cases() if case["name"] == name)
    return case["header"], bytes.fromhex(case["blob_hex"])


def answers(recorder):
    return [header for header, _ in recorder.sent if header["type"] != "console"]


def test_execute_is_answered_by_executed(worker):
    worker, recorder = worker
    request, blob = request_of("execute")
    worker.do_execute(request, blob)
    (answer,) = answers(recorder)
    assert answer == {"type": "executed", "success": True, "error": "", "outputs": [{"name": "y", "value": 42}]}


def test_console_output_past_the_limit_is_counted_not_sent(worker):
    worker, recorder = worker
    console = worker.console
    console.begin()
    for text in ("x" * 70_000 + "\n", "y" * 50_000 + "\n", "z\n"):
        console.write(text)
    console.flush()
    consoles = [header for header, _ in recorder.sent if header["type"] == "console"]
    assert "".join(header["text"] for header in consoles) == "x" * 70_000 + "\n" + "y" * 29_999
    assert sum(header.get("dropped", 0) for header in consoles) == 50_001 - 29_999 + 2
    assert all(len(header["text"].encode()) <= o16n_worker.CONSOLE_CHUNK_BYTES for header in consoles)

    # The next execution has the whole limit again.
    recorder.sent.clear()
    console.begin()
    console.write("again\n")
    console.flush()
    assert [header["text"] for header, _ in recorder.sent] == ["again\n"]
    console.active = False


def test_object_requests_are_answered_by_their_kinds(worker):
    worker, recorder = worker
    import dill

    worker.do_put_object({"type": "put_object", "name": "model"}, dill.dumps({"a": 1}))
    worker.do_list_objects({"type": "list_objects"}, b"")
    worker.do_get_object({"type": "get_object", "name": "model"}, b"")
    worker.do_get_object({"type": "get_object", "name": "missing"}, b"")
    worker.do_delete_object({"type": "delete_object", "name": "model"}, b"")

    kinds = [answer["type"] for answer in answers(recorder)]
    assert kinds == ["done", "object_names", "object", "failed", "done"]
    assert answers(recorder)[1]["names"] == ["model"]
    assert dill.loads(recorder.sent[2][1]) == {"a": 1}
    assert answers(recorder)[3]["kind"] == "not_found"


def test_a_service_answers_consumed_with_its_files_in_the_blob(worker, tmp_path):
    worker, recorder = worker
    os.chdir(tmp_path)
    (tmp_path / "services" / "k").mkdir(parents=True)
    worker.do_load_service({"type": "load_service", "key": "k", "init_code": None, "directory": "services/k"}, b"")
    worker.do_consume({
        "type": "consume", "key": "k",
        "code": "y = x * 1.5\nopen('plot.png', 'wb').write(b'\\x89PNG')",
        "inputs": [{"name": "x", "type": "numeric", "value": 1.5}],
        "outputs": [{"name": "y", "type": "numeric"}],
        "output_files": ["plot.png", "missing.csv"],
    }, b"")

    loaded, consumed = answers(recorder)
    assert loaded == {"type": "service_loaded"}
    assert consumed["type"] == "consumed"
    assert consumed["outputs"] == {"y": 2.25}
    assert consumed["output_files"] == [{"name": "plot.png", "size": 4}, {"name": "missing.csv", "size": None}]
    assert recorder.sent[-1][1] == b"\x89PNG"


def test_an_unknown_request_fails(worker):
    worker, recorder = worker
    worker.channel = recorder
    recorder_requests = iter([({"type": "nonsense"}, b""), (None, b"")])
    worker.channel.receive = lambda: next(recorder_requests)
    worker.serve()
    (answer,) = answers(recorder)
    assert answer["type"] == "failed" and answer["kind"] == "bad_request"


# --- The template protocol (workers/protocol/template.json) ---------------------------------

import o16n_template  # noqa: E402


def template_golden():
    return json.loads((GOLDEN / "template.json").read_text())


def without_nulls(message):
    return {name: value for name, value in message.items() if value is not None}


def golden_message(name):
    case = next(case for case in template_golden()["messages"] if case["name"] == name)
    return case["message"]


def test_the_template_writes_its_messages_as_the_golden_file_spells_them():
    written = {
        "ready": o16n_template.ready_message(41),
        "forked": o16n_template.forked_message(7, 1234),
        "fork_failed": o16n_template.fork_failed_message(8, "fork: Resource temporarily unavailable"),
        "fork_failed_unread": o16n_template.fork_failed_message(None, "a request is not understood"),
        # Wait statuses as waitpid gives them: exit code 3, and death by SIGKILL.
        "exited_with_a_code": o16n_template.exited_message(1234, 3 << 8),
        "exited_by_a_signal": o16n_template.exited_message(1234, 9),
    }
    assert set(written) == {case["name"] for case in template_golden()["messages"]}
    for name, message in written.items():
        assert without_nulls(message) == without_nulls(golden_message(name)), name


def test_every_field_the_template_reads_is_in_every_golden_fork_request():
    source = (HERE / "o16n_template.py").read_text()
    # A field indexed only behind `if request.get(...)` may be absent; any other indexed one
    # must be there, and the template reads no field the server does not send.
    guarded = set(re.findall(r'^\s*if request\.get\("(\w+)"\):$', source, re.MULTILINE))
    indexed = set(re.findall(r'request\["(\w+)"\]', source))
    required = indexed - guarded
    known = indexed | set(re.findall(r'request\.get\("(\w+)"\)', source))
    assert {"home", "uid", "network", "limits"} <= required
    for case in template_golden()["fork_requests"]:
        request = case["request"]
        assert required <= set(request), (case["name"], required - set(request))
        assert set(request) <= known, (case["name"], set(request) - known)
        for name in request["limits"]:
            assert hasattr(resource, "RLIMIT_" + name.upper()), name
