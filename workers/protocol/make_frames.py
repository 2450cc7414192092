"""Writes the golden frames of the worker protocol: `frames.json` (what each frame holds) and
one `NAME.frame` file of bytes per case. The Rust host's, the Python worker's and the R worker's
tests all read them. Run it only when the protocol changes (`python3 make_frames.py`), and
commit what it writes: the Rust test then checks that the host encodes exactly these bytes.

Keys are listed in the order the host serializes them (the tag `type` first, then the fields
in declaration order), so that every frame here is byte for byte what the host writes.
"""

import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent

CASES = [
    # From the host.
    ("execute", "host", {"type": "execute", "code": "y = x * 2\nprint(y)", "inputs": [{"name": "x", "value": 21}], "outputs": ["y"]}, b""),
    ("list_objects", "host", {"type": "list_objects"}, b""),
    ("get_object", "host", {"type": "get_object", "name": "model"}, b""),
    ("put_object", "host", {"type": "put_object", "name": "model"}, bytes.fromhex("800495")),
    ("delete_object", "host", {"type": "delete_object", "name": "model"}, b""),
    ("save_workspace", "host", {"type": "save_workspace"}, b""),
    ("load_workspace", "host", {"type": "load_workspace"}, bytes.fromhex("58")),
    ("load_service", "host", {"type": "load_service", "key": "3f2a", "init_code": "import numpy as np", "directory": "services/3f2a"}, bytes.fromhex("0a0b")),
    ("load_service_without_init_code", "host", {"type": "load_service", "key": "3f2b", "init_code": None, "directory": "services/3f2b"}, b""),
    ("unload_service", "host", {"type": "unload_service", "key": "3f2a"}, b""),
    ("consume", "host", {
        "type": "consume", "key": "3f2a", "code": "y = x * 1.5",
        "inputs": [{"name": "x", "type": "numeric", "value": 1.5}, {"name": "frame", "type": "data.frame", "value": {"a": [1, 2], "b": ["u", "v"]}}],
        "outputs": [{"name": "y", "type": "numeric"}],
        "output_files": ["plot.png", "missing.csv"],
    }, b""),
    ("shutdown", "host", {"type": "shutdown"}, b""),
    # From a worker.
    ("hello", "worker", {"type": "hello", "protocol": 2, "language": "python", "runtime_version": "3.11.7"}, b""),
    ("console", "worker", {"type": "console", "text": "42\n"}, b""),
    ("executed", "worker", {"type": "executed", "success": True, "error": "", "outputs": [{"name": "y", "value": 42}]}, b""),
    ("executed_with_an_error", "worker", {"type": "executed", "success": False, "error": "Error: boom", "outputs": []}, b""),
    ("object_names", "worker", {"type": "object_names", "names": ["model", "x"]}, b""),
    ("object", "worker", {"type": "object"}, bytes.fromhex("80049500")),
    ("done", "worker", {"type": "done"}, b""),
    ("workspace", "worker", {"type": "workspace"}, bytes.fromhex("5802")),
    ("workspace_loaded", "worker", {"type": "workspace_loaded", "names": ["a"]}, b""),
    ("service_loaded", "worker", {"type": "service_loaded"}, b""),
    ("consumed", "worker", {
        "type": "consumed", "success": True, "error": "", "outputs": {"y": 2.25},
        "output_files": [{"name": "plot.png", "size": 4}, {"name": "missing.csv", "size": None}],
        "changed_files": ["plot.png"],
    }, bytes.fromhex("89504e47")),
    ("failed_not_found", "worker", {"type": "failed", "kind": "not_found", "error": "object `z` not found"}, b""),
    ("failed_to_load", "worker", {"type": "failed", "kind": "load_failed", "error": "initCode failed: boom"}, b""),
]


def frame(header, blob):
    encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return struct.pack(">II", 4 + len(encoded) + len(blob), len(encoded)) + encoded + blob


def main():
    index = []
    for name, sender, header, blob in CASES:
        (HERE / (name + ".frame")).write_bytes(frame(header, blob))
        index.append({"name": name, "from": sender, "header": header, "blob_hex": blob.hex()})
    (HERE / "frames.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
