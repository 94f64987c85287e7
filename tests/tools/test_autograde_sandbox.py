"""The grader's sandbox as it sees itself and as the machine sees it, and the wire format its
worker speaks. The sandbox tests skip, saying why, where bwrap cannot make it."""

import os

import numpy as np
import pytest
from autograde_helpers import reference, sandbox_problem
from conftest import REPO_ROOT

from tools.grader import worker as wire
from tools.grader.sandbox import (
    UID_BASE,
    Limits,
    Runner,
    SandboxUnavailable,
    _refuse_to_expose,
    check_sandbox,
    sandbox_uid,
)


@pytest.fixture(scope="module")
def runner():
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"no sandbox to test: {problem}")
    runner = Runner.prepare(sandbox=True)
    yield runner
    runner.cleanup()


def test_the_sandbox_holds_an_unprivileged_user_no_network_and_only_the_files_it_needs(runner):
    report = check_sandbox(runner)
    if os.geteuid() == 0:  # really another user, not root in a user namespace
        assert report["uid"] == report["gid"] == UID_BASE + os.getpid() == sandbox_uid()
        assert report["groups"] in ([], [report["gid"]])
        assert not any(report["caps"].values()), report["caps"]
    else:
        assert report["caps"]["CapEff"] == 0
    assert report["no_new_privs"] == 1 and report["interfaces"] == ["lo"]
    top = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "proc", "dev", "tmp", "kit", "grader"}
    extra = set(report["root"]) - top  # only the first folder of the Python's own paths
    assert not {"etc", "home", "var", "srv", "mnt", "opt", "sys"} & set(report["root"])
    assert len(extra) <= 3, report["root"]
    assert {"fc_layer.py", "conv_layer.py", "layer.py"} <= set(report["kit"]) and "_reference" not in report["kit"]
    assert not any(name.startswith("autograde") for name in report["kit"])


def _descendants(pid):
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            children.setdefault(int(fields["PPid"]), []).append((int(entry), fields))
        except (OSError, KeyError, ValueError):
            pass
    found, todo = [], [pid]
    while todo:
        for child, fields in children.get(todo.pop(), []):
            found.append((child, fields))
            todo.append(child)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="the grader drops to another user only when it runs as root")
def test_the_machine_sees_the_students_process_as_the_unused_user_with_no_capabilities(runner):
    with runner.piece("fc_layer.py", reference("fc_layer.py"), Limits(timeout=30)) as piece:
        piece.call({"op": "import", "class": "FCLayer"})
        workers = []
        for pid, fields in _descendants(piece.process.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"grader/worker.py" in f.read() and fields["Name"].strip() != "bwrap":
                    workers.append(fields)
        assert len(workers) == 1
        assert [int(n) for n in workers[0]["Uid"].split()] == [sandbox_uid()] * 4
        assert int(workers[0]["CapEff"], 16) == 0 and int(workers[0]["CapPrm"], 16) == 0
        assert piece.call({"op": "layer", "layer": "a", "role": "hidden", "in_shape": [1, 1, 3],
                           "proto": {"name": "a", "type": "FC", "num_channels": 2, "init_wt": 1.0,
                                     "epsilon": 0.1}}) == []
        out, _report = piece.call({"op": "up", "layer": "a"}, [np.ones((2, 3)), np.zeros((1, 2)), np.eye(3)], replies=2)
    assert np.array_equal(out, np.full((3, 2), 1.0))  # relu(x @ w.T + b), computed in there


def test_python_above_the_reference_or_at_the_root_is_refused():
    with pytest.raises(SandboxUnavailable, match="must not see"):
        _refuse_to_expose(str(REPO_ROOT.parent), [REPO_ROOT])
    with pytest.raises(SandboxUnavailable):
        _refuse_to_expose("/", [REPO_ROOT])
    _refuse_to_expose(str(REPO_ROOT / ".venv"), [REPO_ROOT])  # inside the kit's folder is fine


def test_frames_carry_json_and_float64_arrays_and_nothing_else():
    arrays = [np.arange(6.0).reshape(2, 3), None, np.zeros((0, 4)), np.array(2.5)]
    frame = wire.encode_frame({"ok": True}, arrays)
    head_length, body_length = wire.parse_prefix(frame[:wire.PREFIX.size])
    header, decoded = wire.decode_frame(frame[wire.PREFIX.size:wire.PREFIX.size + head_length],
                                        frame[wire.PREFIX.size + head_length:])
    assert header["ok"] is True and body_length == 8 * 7
    assert decoded[1] is None and all(np.array_equal(a, b) for a, b in zip(decoded[::2], arrays[::2]))
    assert decoded[3].shape == () and decoded[3] == 2.5


@pytest.mark.parametrize("head,body,words", [
    (b'{"arrays": [[2, 2]]}', b"\0" * 24, "larger than the frame"),
    (b'{"arrays": [[1]]}', b"\0" * 16, "bytes after the last array"),
    (b'{"arrays": [[-1]]}', b"", "an array shape"),
    (b'{"arrays": "x"}', b"", "without a list of arrays"),
    (b"\x80\x04\x95", b"", "not JSON"),  # a pickle is not a frame
])
def test_a_malformed_frame_is_refused_with_what_is_wrong(head, body, words):
    with pytest.raises(wire.FrameError, match=words):
        wire.decode_frame(head, body)


def test_a_frame_claiming_too_much_is_refused_before_it_is_read():
    with pytest.raises(wire.FrameError, match="at most 64 MB"):
        wire.parse_prefix(wire.PREFIX.pack(2, 10 << 30))
    with pytest.raises(wire.FrameError, match="header of"):
        wire.parse_prefix(wire.PREFIX.pack(1 << 30, 0))


def test_without_a_sandbox_the_students_code_never_runs_as_root(monkeypatch):
    """As root, --unsafe-no-sandbox runs the pieces as the unused user, or not at all."""
    from tools.grader import sandbox as autograde_sandbox

    monkeypatch.setattr(autograde_sandbox, "sandbox_uid", lambda: UID_BASE + 1)
    monkeypatch.setattr(autograde_sandbox, "_world_reachable", lambda path: True)
    assert autograde_sandbox.unsafe_uid() == UID_BASE + 1
    monkeypatch.setattr(autograde_sandbox, "_world_reachable", lambda path: False)
    with pytest.raises(SandboxUnavailable, match="must not run as root"):
        autograde_sandbox.unsafe_uid()
    monkeypatch.setattr(autograde_sandbox, "sandbox_uid", lambda: None)  # not root: the grader's own user
    assert autograde_sandbox.unsafe_uid() is None
