"""What the student's code does while one of its methods runs (staff only): it runs in the
sandbox, beside worker.py, in the student's process.

Two things are watched, and the grader (never this module) decides from what it reports:

- Method 2's convolutions. `convolutions.convolve` is wrapped: it counts its calls and, when
  the grader asks, multiplies its results by a factor. Method 2 computes each of its answers
  as sums of convolve's results, so with that factor its answers scale exactly as the grader
  expects; an answer computed another way does not. The other ways to convolve (the kit's
  method-1 kernels, numpy's and scipy's convolutions and FFTs, a hand-made im2col with
  as_strided or sliding_window_view) are wrapped too, to record where the student's code
  called them.
- Python-level work: the calls (Python and C) and the lines run in the student's file while
  the method runs, so the grader can see whether that work grows with the batch (a loop).

All of it runs where the student's code can undo it; that can only lose points: an undone
scaling no longer scales, an undone count no longer grows, and the code that would undo
either is what the grader's reading of the source names (tools/grader/source_rules.py).
Only the standard library is imported at import time; numpy and scipy when installed.
"""

import functools
import importlib.abc
import sys

# (label, module, attributes): what method 2 must not compute with, in the order of `report`.
CONV_PATHS = (
    ("convolutions.correlate (method 1)", "convolutions", ("correlate",)),
    ("convolutions.correlate_weight_derivative (method 1)", "convolutions", ("correlate_weight_derivative",)),
    ("numpy.convolve", "numpy", ("convolve", "correlate")),
    ("as_strided (a hand-made im2col)", "numpy.lib.stride_tricks", ("as_strided",)),
    ("sliding_window_view (a hand-made im2col)", "numpy.lib.stride_tricks", ("sliding_window_view",)),
    ("numpy.fft", "numpy.fft", ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2",
                                "irfft2", "rfftn", "irfftn")),
    ("scipy.signal", "scipy.signal", ("convolve", "correlate", "convolve2d", "correlate2d", "fftconvolve",
                                      "oaconvolve")),
    ("scipy.ndimage", "scipy.ndimage", ("convolve", "correlate", "convolve1d", "correlate1d")),
    ("scipy.fft", "scipy.fft", ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2",
                                "irfft2", "rfftn", "irfftn")),
)
MAX_USES = 50  # (path, line) pairs in a report, at most


class Watch:
    """The watch over one student file (its absolute path)."""

    def __init__(self, path):
        self.path = path
        self.scale = None       # convolve's results times this, while set
        self.active = 0         # wrapped calls running (a wrapped function calling another counts once)
        self.reset()

    def reset(self):
        self.convolve_calls = 0
        self.convolve_work = 0  # multiply-adds, as the convolution defines them
        self.used = set()  # (index in CONV_PATHS, line of the student's file that called it)
        self.events = -1

    def report(self):
        """The numbers sent to the grader: events (-1: not counted), convolve's calls and
        work, then a pair (index in CONV_PATHS, line) for each place another conv path was called."""
        numbers = [self.events, self.convolve_calls, self.convolve_work]
        for pair in sorted(self.used)[:MAX_USES]:
            numbers += pair
        return numbers

    def _student_lines(self):
        """The lines of the student's file on the stack, innermost first."""
        lines, frame = [], sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename == self.path:
                lines.append(frame.f_lineno)
            frame = frame.f_back
        return lines

    # -- method 2 ---------------------------------------------------------------------

    def watch_convolutions(self):
        """Wrap convolve and the other conv paths (those of scipy once it is imported)."""
        import convolutions

        convolutions.convolve = self._convolve(convolutions.convolve)
        for index, (_, module, names) in enumerate(CONV_PATHS):
            if not module.startswith("scipy"):
                self._wrap_module(index, importlib.import_module(module), names)
        sys.meta_path.insert(0, _AfterImport({m: (index, names) for index, (_, m, names) in enumerate(CONV_PATHS)
                                              if m.startswith("scipy")}, self._wrap_module))

    def _convolve(self, convolve):
        @functools.wraps(convolve)
        def watched(inputs, weights, padding=0):
            result = convolve(inputs, weights, padding)
            if not self.active:
                self.convolve_calls += 1
                kernel = weights.shape[-2] * weights.shape[-1]
                self.convolve_work += int(result.size) * int(kernel)
                if self.scale is not None:
                    result = result * result.dtype.type(self.scale)
            return result
        return watched

    def _wrap_module(self, index, module, names):
        for name in names:
            original = getattr(module, name, None)
            if original is None or getattr(original, "_watched", False):
                continue
            wrapped = self._recording(index, original)
            setattr(module, name, wrapped)
            home = sys.modules.get(getattr(original, "__module__", None) or "")
            if home is not None and getattr(home, name, None) is original:
                setattr(home, name, wrapped)  # its defining module too (scipy.signal._signaltools ...)

    def _recording(self, index, original):
        @functools.wraps(original)
        def recorded(*args, **kwargs):
            if not self.active:
                # Every line of the student's on the way: a helper's line and its callers'.
                self.used.update((index, line) for line in self._student_lines())
            self.active += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.active -= 1
        recorded._watched = True
        return recorded

    # -- Python-level work -----------------------------------------------------------

    def counting(self, call):
        """call(), counting the Python and C calls made while it runs and the lines it runs
        in the student's file; the count in self.events."""
        count = [0]
        path = self.path

        def lines(frame, event, arg):
            count[0] += 1
            return lines

        def trace(frame, event, arg):
            return lines if frame.f_code.co_filename == path else None

        def profile(frame, event, arg):
            if event in ("call", "c_call"):
                count[0] += 1

        sys.settrace(trace)
        sys.setprofile(profile)
        try:
            return call()
        finally:
            sys.setprofile(None)
            sys.settrace(None)
            self.events = count[0]


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls back once each module of `wanted` ({name: (index, names)}) has been imported."""

    def __init__(self, wanted, callback):
        self.wanted, self.callback = wanted, callback

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.wanted:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, (index, names) = spec.loader, self.wanted[fullname]

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                self_.callback(index, module, names)

        self_ = self
        spec.loader = Loader()
        return spec
