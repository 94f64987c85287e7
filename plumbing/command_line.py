"""What the scripts and the course tools share on the command line.

    from plumbing.command_line import start_script
    start_script(__name__, "train.py")   # first thing: from here on, every ending is one line

    from plumbing.command_line import OneLineParser, entry_point, load_kernels, seed

    @entry_point("train.py")
    def main(argv=None):
        ...                       # raise UserError subclasses; return 0 or a status

    if __name__ == "__main__":
        sys.exit(main())
"""

import argparse
import contextlib
import functools
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

from plumbing.errors import UserError

BUILD_COMMAND = "python setup.py build_ext --inplace"
SEED_LIMIT = 2 ** 63  # numpy's generators take any seed >= 0; the last state keeps it in 64 bits


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad command line reported in one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seed(text):
    """The argparse type of --seed: an integer from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, got {text}")
    return value


def load_kernels(prog):
    """Import the kernels (`convolutions`) for a script, before it imports the kit: the compiled
    module, or else its numpy version (convolutions.py, which says so in one line on stderr).
    `import convolutions` finds the numpy version by itself where the compiled module is not
    built; a build that cannot be loaded (built for another numpy, say) raises ImportError
    instead, and then the numpy version is loaded from its file, its line saying why. Exit in
    one line naming the build command if neither is there."""
    try:
        import convolutions  # noqa: F401
        return
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name != "convolutions":
            raise  # another module missing: not ours to explain
        why = ("the compiled kernels are not built" if isinstance(e, ModuleNotFoundError)
               else f"the compiled kernels cannot be loaded ({' '.join(str(e).split())})")
    path = Path(__file__).resolve().parents[1] / "convolutions.py"
    if not path.is_file():
        print(f"{prog}: error: {why} and their numpy version ({path.name}) is missing; "
              f"build them with: {BUILD_COMMAND}", file=sys.stderr)
        sys.exit(2)
    spec = importlib.util.spec_from_file_location("convolutions", path)
    module = importlib.util.module_from_spec(spec)
    module.WHY = why  # its one line says why it runs
    sys.modules["convolutions"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["convolutions"]
        raise


def require_compiled_kernels(prog):
    """Exit in one line naming the build command unless the compiled kernels are loaded or
    load (`convolutions.COMPILED`): for the grader and the benchmark, which time or grade
    against them. Never loads their numpy version (nor prints its line)."""
    module = sys.modules.get("convolutions")
    if module is None:
        try:
            spec = importlib.util.find_spec("convolutions")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            try:
                module = importlib.import_module("convolutions")
            except ImportError:
                module = None
    if getattr(module, "COMPILED", False) is not True:
        print(f"{prog}: error: needs the compiled kernels (convolutions); build them with: {BUILD_COMMAND}",
              file=sys.stderr)
        sys.exit(2)


_script = None  # the name of the script this process runs, once start_script() ran


def start_script(module_name, prog):
    """The first statement of every script, before its imports: from here to its end, a
    signal or a missing standard stream ends it in one line, never a traceback. Does
    nothing unless `module_name` is "__main__" (a test that imports the script keeps its
    own signal handlers).

    - Ctrl-C or SIGTERM while it is still importing (numpy, matplotlib: up to a second):
      nothing has been read or written yet, so it ends at once, in one line, with 130 or 143;
      once main() runs, `entry_point` takes over (and after main(), the process only exits:
      a late signal changes nothing).
    - A closed standard output (`>&-`): one line, exit status 2, before any work: what the
      script prints would be lost, and the first file it opened would take the number of
      standard output and receive its lines.
    - A closed standard input or error: /dev/null takes its number, for the same reason.
    - A locale whose encoding cannot show a path (LANG=C, PYTHONIOENCODING=ascii): escapes.
    """
    global _script
    if module_name != "__main__":
        return
    _script = prog
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _while_starting)
    closed = [fd for fd in (0, 1, 2) if not _is_open(fd)]
    for fd in closed:
        devnull = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
    if 2 in closed:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    if 1 in closed:
        _say(f"{prog}: error: standard output is closed: nothing was done (send it to a file or to /dev/null)")
        os._exit(2)
    # A path the terminal's encoding cannot show (an accent under LANG=C, or PYTHONIOENCODING=ascii)
    # is printed with escapes, as stderr already prints it, never as a UnicodeEncodeError.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="backslashreplace")


def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _while_starting(signum, frame):
    how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    _say(f"{_script}: {how} while starting: nothing was read or written")
    os._exit(143 if signum == signal.SIGTERM else 130)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler's time limit, a shutdown), handled as Ctrl-C is."""


# Set once a Ctrl-C or SIGTERM has been raised, or main() is over: from then on the handler
# below does nothing, so no second signal can raise inside the lines that end a script.
_ending = False


def _on_signal(signum, frame):
    """Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated, once: later ones are let go."""
    global _ending
    if _ending:
        return
    _ending = True
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def entry_point(prog):
    """Wrap a script's main(argv=None) so that everything that can end it ends in one line.

    - a UserError: `<prog>: error: <message>`, exit status its class's (2, or 1 for a run
      that diverged);
    - a piece of the assignment not written yet (NotImplementedError): one line naming it, 1;
    - Ctrl-C (130) and SIGTERM (143): `<prog>: interrupted` / `terminated (SIGTERM)`;
    - a closed or broken pipe (`| head -1`): nothing more is written, 141 (as a shell
      reports a process a pipe ended);
    - a name the locale's encoding cannot write (LANG=C, UTF-8 mode off): one line, 2.

    An exception may carry `stopped_`, the words saying what the run left on disk; they
    follow its line. Anything else is a bug in the kit: its traceback stays.
    """
    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            global _ending
            # Only the main thread may handle signals (main() can be called from others).
            handling = threading.current_thread() is threading.main_thread()
            if handling:
                previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
                _ending = False
                signal.signal(signal.SIGINT, _on_signal)
                signal.signal(signal.SIGTERM, _on_signal)
            try:
                status = main(argv)
                _ending = True  # before any call: a signal from here on changes nothing
                sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
                return status
            except BaseException:
                # The first statement of every way out (no call before it, where a signal's
                # handler could run): a signal while the script says how it ended changes nothing.
                _ending = True
                try:
                    raise
                except UserError as e:
                    _hold_signals(handling)
                    _say(f"{prog}: error: {e}{_stopped(e, '; stopped ')}")
                    return e.exit_status
                except NotImplementedError as e:
                    _hold_signals(handling)
                    _say(f"{prog}: error: not written yet: {e}")
                    return 1
                except UnicodeEncodeError as e:
                    # A path from a UTF-8 config or command line that this locale cannot name
                    # (LANG=C with Python's UTF-8 mode off): the environment, not the kit.
                    _hold_signals(handling)
                    _say(f"{prog}: error: {e.object[e.start:e.end + 20]!r}... cannot be written in this locale's "
                         f"encoding ({e.encoding}); use a UTF-8 locale (LANG=C.UTF-8) or set PYTHONUTF8=1")
                    return 2
                except KeyboardInterrupt as e:
                    _hold_signals(handling)
                    how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
                    # In a terminal a progress line may still lack its newline.
                    newline = "\n" if _isatty(sys.stdout) else ""
                    _say(f"{newline}{prog}: {how}{_stopped(e, ' ')}")
                    return 143 if isinstance(e, Terminated) else 130
                except BrokenPipeError:
                    _hold_signals(handling)
                    _quiet_stdout()
                    return 141
            finally:
                if handling and _script is not None:
                    _hold_signals(True)  # main() is over: what is left is the exit itself
                elif handling:
                    for signum, handler in previous.items():
                        signal.signal(signum, handler)
        return run
    return wrap


def _hold_signals(handling):
    """Once a script is ending, a second Ctrl-C or SIGTERM cannot cut its last line short (a
    signal while these are set raises nothing: `_ending` is set before any call here)."""
    if handling:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _stopped(error, joint):
    text = getattr(error, "stopped_", "")
    return f"{joint}{text}" if text else ""


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _say(line):
    """One line on stderr; a stderr that is closed too gets nothing."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        pass


def _quiet_stdout():
    """After a broken pipe: stdout points at /dev/null, so the interpreter's own flush at
    exit finds nothing to complain about."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
