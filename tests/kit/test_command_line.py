"""command_line.py: one-line argparse errors, --seed, and the scripts before the kernels are built."""

import argparse
import runpy
import sys

import pytest
from conftest import REPO_ROOT

SCRIPTS = ["train", "evaluate", "grad_check", "play_with_convolutions"]
# What a script imports that imports the kernels: gone from sys.modules, they are imported anew.
KERNEL_USERS = ["net", "conv_layer", "maxpool_layer"]


@pytest.mark.parametrize("script", SCRIPTS + ["tools/report"])
def test_a_script_before_the_kernels_are_built_says_the_build_command_in_one_line(script, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "convolutions", None)  # import convolutions: ModuleNotFoundError
    for name in KERNEL_USERS + SCRIPTS + ["evaluate"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO_ROOT / f"{script}.py"), run_name="kit_script")
    assert info.value.code == 2
    err = capsys.readouterr().err
    prog = script.split("/")[-1]
    assert err.splitlines() == [f"{prog}.py: error: the compiled kernels (convolutions) are not built yet; "
                                "build them with: python setup.py build_ext --inplace"]


def test_kernels_that_cannot_be_loaded_are_named_with_the_reason(monkeypatch, capsys):
    from plumbing import command_line

    class Broken:
        def find_spec(self, name, path=None, target=None):
            if name == "convolutions":
                raise ImportError("convolutions.so: undefined symbol: PyFoo")

    monkeypatch.delitem(sys.modules, "convolutions", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken()] + sys.meta_path)
    with pytest.raises(SystemExit):
        command_line.require_compiled_kernels("train.py")
    assert "cannot be loaded (convolutions.so: undefined symbol: PyFoo)" in capsys.readouterr().err


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
