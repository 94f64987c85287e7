"""command_line.py: one-line argparse errors, --seed, and the scripts before the kernels are built."""

import argparse
import runpy
import sys

import pytest
from conftest import REPO_ROOT

SCRIPTS = ["train", "evaluate", "grad_check", "play_with_convolutions"]
# What a script imports that imports the kernels: gone from sys.modules, they are imported anew.
KERNEL_USERS = ["net", "conv_layer", "maxpool_layer"]


@pytest.fixture
def fresh_imports():
    """Modules a test imports anew are dropped after it: they hold the kernels it loaded."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.mark.parametrize("script", SCRIPTS + ["tools/report"])
def test_a_script_before_the_kernels_are_built_goes_on_with_their_numpy_version_in_one_line(
        script, monkeypatch, capsys, fresh_imports):
    monkeypatch.setitem(sys.modules, "convolutions", None)  # import convolutions: ModuleNotFoundError
    for name in KERNEL_USERS + SCRIPTS + ["evaluate"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    runpy.run_path(str(REPO_ROOT / f"{script}.py"), run_name="kit_script")
    assert sys.modules["convolutions"].COMPILED is False
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("convolutions: the compiled kernels are not built; using their "
                                               "numpy version (about "), err
    assert err[0].endswith("build them with: python setup.py build_ext --inplace")


def test_kernels_that_cannot_be_loaded_are_named_with_the_reason(monkeypatch, capsys, fresh_imports):
    from plumbing import command_line

    class Broken:
        def find_spec(self, name, path=None, target=None):
            if name == "convolutions":
                raise ImportError("convolutions.so: undefined symbol: PyFoo")

    monkeypatch.delitem(sys.modules, "convolutions", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken()] + sys.meta_path)
    command_line.load_kernels("train.py")
    assert sys.modules["convolutions"].COMPILED is False
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("convolutions: the compiled kernels cannot be loaded "
                                               "(convolutions.so: undefined symbol: PyFoo); using their numpy")


def test_what_needs_the_compiled_kernels_refuses_their_numpy_version_in_one_line(monkeypatch, capsys):
    import convolutions
    from plumbing import command_line

    monkeypatch.setattr(convolutions, "COMPILED", False)
    with pytest.raises(SystemExit) as info:
        command_line.require_compiled_kernels("bench.py")
    assert info.value.code == 2
    assert capsys.readouterr().err == ("bench.py: error: needs the compiled kernels (convolutions); build them "
                                       "with: python setup.py build_ext --inplace\n")


@pytest.mark.parametrize("text", ["-5", str(2 ** 63), "2**63", "1.5"])
def test_seed_refuses_what_numpy_or_the_last_state_cannot_keep(text):
    from plumbing.command_line import seed

    with pytest.raises(argparse.ArgumentTypeError, match="from 0 to 2\\*\\*63 - 1"):
        seed(text)


def test_seed_takes_the_whole_range():
    from plumbing.command_line import seed

    assert seed("0") == 0 and seed(str(2 ** 63 - 1)) == 2 ** 63 - 1


@pytest.mark.parametrize("script, argv", [("train", ["--epochs", "x", "c.yaml"]), ("evaluate", []),
                                          ("play_with_convolutions", ["--bogus"])])
def test_a_bad_command_line_is_one_line(script, argv, capsys):
    module = __import__(script)
    with pytest.raises(SystemExit) as info:
        module.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"{script}.py: error: "), err


def test_usps_command_line_errors_are_one_line(capsys):
    from data import usps
    with pytest.raises(SystemExit):
        usps.main(["--mirror"])
    err = capsys.readouterr().err
    assert err == "usps.py: error: argument --mirror: expected one argument (see --help)\n"


def test_one_line_parser_says_where_to_look(capsys):
    from plumbing.command_line import OneLineParser

    with pytest.raises(SystemExit):
        OneLineParser(prog="x.py").parse_args(["--nope"])
    assert capsys.readouterr().err == "x.py: error: unrecognized arguments: --nope (see --help)\n"


# --- a signal while a script ends ---------------------------------------------------------

def _ending_script(monkeypatch, ending, sends):
    """An entry_point main that ends by `ending` ('return' or 'error'), with SIGTERM sent to
    this process from inside `sends` (a name in plumbing.command_line: the moment it comes)."""
    import os
    import signal

    from plumbing import command_line
    from plumbing.errors import ConfigError

    original = getattr(command_line, sends) if sends != "flush" else sys.stdout.flush
    calls = []

    def sending(*args, **kwargs):
        if not calls:
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(args)
        return original(*args, **kwargs)

    if sends == "flush":
        monkeypatch.setattr(sys.stdout, "flush", sending)
    else:
        monkeypatch.setattr(command_line, sends, sending)

    @command_line.entry_point("ending.py")
    def main(argv=None):
        if ending == "error":
            raise ConfigError("bad.yaml: a bad key")
        return 0

    previous = signal.getsignal(signal.SIGTERM)
    try:
        return main([]), calls
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("ending,sends,status", [
    ("return", "flush", 0),            # main() is over: the signal changes nothing
    ("error", "_hold_signals", 2),     # as the handlers are being let go
    ("error", "_say", 2),              # as the error's line is written
])
def test_a_signal_while_a_script_ends_changes_nothing(monkeypatch, capsys, ending, sends, status):
    code, calls = _ending_script(monkeypatch, ending, sends)
    assert calls and code == status
    err = capsys.readouterr().err
    assert "terminated" not in err and (err == "" if status == 0 else err.count("\n") == 1)


def test_only_the_first_signal_raises(monkeypatch):
    import os
    import signal

    from plumbing import command_line

    @command_line.entry_point("twice.py")
    def main(argv=None):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs within these steps
                pass
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal while the first is handled
            for _ in range(1000):
                pass
            raise
        return 0

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main([]) == 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
