"""The student's side of the grader (staff only): python -I -B worker.py KIT FILE

It runs in the sandbox, as the student's process. KIT is a copy of the student kit (its
solution regions blank) with the student's FILE (fc_layer.py or conv_layer.py) in it. The
worker imports that file and then answers the grader's requests, one at a time: make a
layer of the student's class, run its ComputeUp or ComputeDown on the arrays sent (each reply
ends with watch.py's report on that call). It holds no reference solution and no expected
answer, and decides nothing: the grader compares what comes back with answers it keeps to
itself, so nothing here (or in the student's code, which can rewrite all of it) can raise a
score; the report can only take points away.

The wire format, both ways, is a frame: a 4-byte header length and an 8-byte body length
(big-endian), a JSON header, then the body: the float64 arrays the header lists (its
"arrays", each a shape or null for None), little-endian and in C order, one after another.
No pickle: the grader reads a frame as JSON and raw numbers only.

Only the standard library and numpy are imported here, besides the student's file and watch.py
(beside this file: what the student's code does while its methods run).
"""

import json
import os
import struct
import sys
import traceback

PREFIX = struct.Struct(">IQ")
MAX_HEADER = 1 << 20
MAX_BODY = 64 << 20  # bytes of arrays in one frame; the grader refuses bigger ones


class FrameError(ValueError):
    """A frame that breaks the format or its limits."""


def encode_frame(header, arrays=()):
    """bytes of one frame: `header` (a JSON-able dict) with `arrays` (numpy arrays or None)."""
    import numpy as np

    shapes, blobs = [], []
    for array in arrays:
        if array is None:
            shapes.append(None)
            continue
        array = np.asarray(array, dtype="<f8", order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        shapes.append(list(array.shape))
        blobs.append(array.tobytes())
    head = json.dumps(dict(header, arrays=shapes)).encode()
    body = b"".join(blobs)
    return PREFIX.pack(len(head), len(body)) + head + body


def parse_prefix(data):
    """(header length, body length) of a frame's first PREFIX.size bytes, checked."""
    head_length, body_length = PREFIX.unpack(data)
    if head_length > MAX_HEADER:
        raise FrameError(f"a header of {head_length} bytes (at most {MAX_HEADER})")
    if body_length > MAX_BODY:
        raise FrameError(f"{body_length} bytes of arrays (at most {MAX_BODY >> 20} MB)")
    return head_length, body_length


def decode_frame(head, body):
    """(header dict, [array or None]) of a frame's header and body bytes; FrameError if they
    do not agree (any shape, any count)."""
    import numpy as np

    try:
        header = json.loads(head.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise FrameError(f"a header that is not JSON ({e})") from None
    shapes = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(shapes, list) or len(shapes) > 16:
        raise FrameError("a header without a list of arrays")
    arrays, offset = [], 0
    for shape in shapes:
        if shape is None:
            arrays.append(None)
            continue
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_BODY for n in shape)):
            raise FrameError(f"an array shape {str(shape)[:80]}")
        count = 1
        for n in shape:
            count *= n
        if offset + 8 * count > len(body):
            raise FrameError("arrays larger than the frame")
        arrays.append(np.frombuffer(body, dtype="<f8", count=count, offset=offset).reshape(shape).copy())
        offset += 8 * count
    if offset != len(body):
        raise FrameError("bytes after the last array")
    return header, arrays


def _read_exactly(fd, size):
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    """The next frame on the blocking descriptor fd, or None at its end."""
    prefix = _read_exactly(fd, PREFIX.size)
    if prefix is None:
        return None
    head_length, body_length = parse_prefix(prefix)
    head = _read_exactly(fd, head_length)
    body = _read_exactly(fd, body_length)
    if head is None or body is None:
        return None
    return decode_frame(head, body)


def write_frame(fd, header, arrays=()):
    data = memoryview(encode_frame(header, arrays))
    while data:
        data = data[os.write(fd, data):]


# ------------------------------------------------------------------------------------------
# Serving the grader
# ------------------------------------------------------------------------------------------

def student_error(exc, path):
    """'TypeError: ... (fc_layer.py, line 32)': the exception and where in the student's file."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.abspath(frame.filename) == path:
            where = f" ({os.path.basename(path)}, line {frame.lineno})"
            break
    text = f"{type(exc).__name__}: {exc}"
    return (text[:300] + "...") if len(text) > 300 else text + where


def _load_watch():
    """tools/grader/watch.py, from beside this file (in the sandbox: /grader)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watch.py")
    spec = importlib.util.spec_from_file_location("grader_watch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Server:
    """The student's layers, by the names the grader gives them."""

    def __init__(self, kit, filename):
        self.kit, self.filename = kit, filename
        self.path = os.path.join(kit, filename)
        self.cls = None
        self.layers = {}
        self.watch = _load_watch().Watch(self.path)

    def handle(self, header, arrays):
        """(reply header, reply arrays) of one request; raises whatever the student's code raises."""
        op = header.get("op")
        if op == "import":
            import importlib

            if header["class"] == "ConvLayer":  # before the student's file can import what it wraps
                self.watch.watch_convolutions()
            module = importlib.import_module(self.filename[:-3])
            self.cls = getattr(module, header["class"])
            return {}, []
        if op == "layer":
            import numpy as np

            layer = self.cls(dict(header["proto"]))
            roles = header["role"].split("+")  # "hidden", "input", "output" or "input+output"
            if "input" in roles:
                layer.SetAsInput()
            if "output" in roles:
                layer.SetAsOutput()
            layer.Initialize(*header["in_shape"], rng=np.random.default_rng(0))
            self.layers[header["layer"]] = layer
            return {}, []
        layer = self.layers[header["layer"]]
        if op == "up":
            w, b, x = arrays
            layer.w_, layer.b_ = w, b
            outputs = self._watched(header, lambda: layer.ComputeUp(x))
            return {}, [self._array(outputs, "ComputeUp"), self.watch.report()]
        if op == "down":
            w, b, d, o, x = arrays
            layer.w_, layer.b_ = w, b
            if header.get("forward_first"):
                # As in training: the student's own forward pass first, whatever it computes
                # (what it keeps for the backward pass must be there); if it raises, the
                # backward pass is still tried.
                try:
                    layer.ComputeUp(x.copy())
                except Exception:
                    pass
            returned = self._watched(header, lambda: layer.ComputeDown(d, o, x))
            if not isinstance(returned, tuple) or len(returned) != 3:
                raise TypeError(f"ComputeDown returned {type(returned).__name__}, not a tuple "
                                "(dC_by_dinputs, dw, db)")
            return {}, [None if v is None else self._array(v, "ComputeDown") for v in returned] + [
                self.watch.report()]
        raise ValueError(f"unknown request {op!r}")

    def _watched(self, header, call):
        """call() under the watch: convolve scaled by header["convolve_scale"] if given, the
        Python-level work counted if header["count"]."""
        self.watch.reset()
        self.watch.scale = header.get("convolve_scale")
        try:
            return self.watch.counting(call) if header.get("count") else call()
        finally:
            self.watch.scale = None

    @staticmethod
    def _array(value, method):
        import numpy as np

        array = np.asarray(value, dtype=np.float64)
        if array.nbytes > MAX_BODY // 2:
            raise ValueError(f"{method} returned {array.size} numbers, far more than asked for")
        return array


def main(argv=None):
    kit, filename = (sys.argv[1:] if argv is None else argv)[:2]
    kit = os.path.abspath(kit)
    # The requests and replies get descriptors of their own; 0 and 1 become /dev/null and
    # stderr, so the student's input() and print() cannot touch them by accident.
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    sys.path.insert(0, kit)
    server = Server(kit, filename)
    while True:
        try:
            request = read_frame(requests)
        except FrameError:
            return 3
        if request is None:  # the grader is done
            return 0
        try:
            header, arrays = server.handle(*request)
            reply = dict(header, ok=True)
        except BaseException as e:  # noqa: B036 -- anything, SystemExit included, is the student's failure
            reply, arrays = {"error": student_error(e, server.path)}, []
        try:
            write_frame(replies, reply, arrays)
        except BaseException as e:  # noqa: B036 -- e.g. an array numpy cannot convert
            write_frame(replies, {"error": student_error(e, server.path)})


if __name__ == "__main__":
    sys.exit(main())
