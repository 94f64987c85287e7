"""setup.py's compiler probes and flags: any failure of the probe compiler is a refusal (a serial
build with its one-line notice), never a traceback, whichever module its error class comes from;
each compiler type gets its own flags (gcc-like ones what the probes accept, MSVC its own)."""

import ast

import pytest
from conftest import REPO_ROOT


def probe_functions():
    """setup.py's functions and constants, taken from its source without running the build the
    file runs when executed."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    wanted = [node for node in tree.body
              if isinstance(node, (ast.FunctionDef, ast.Import, ast.ImportFrom, ast.Assign))
              and not (isinstance(node, ast.ImportFrom) and node.module.startswith(("Cython", "setuptools")))
              and not (isinstance(node, ast.Assign) and "extension" in ast.unparse(node))]
    namespace = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "setup.py", "exec"), namespace)
    return namespace


class CompileError(Exception):
    """Like distutils.errors.CompileError, from another copy of distutils than setup.py's."""


class ClangWithoutOmpH:
    def compile(self, sources, output_dir=None, extra_postargs=None):
        raise CompileError("probe.c:1:10: fatal error: 'omp.h' file not found")

    def link_executable(self, *args, **kwargs):  # pragma: no cover - compile fails first
        raise AssertionError("linked after a failed compile")


def test_a_probe_failing_with_a_foreign_compile_error_is_a_refusal_not_a_traceback():
    namespace = probe_functions()
    assert namespace["compiler_accepts"](ClangWithoutOmpH(), ["-fopenmp"], namespace["OPENMP_PROBE"]) is False


def test_a_probe_that_compiles_and_links_is_accepted(tmp_path):
    class Fine:
        def compile(self, sources, output_dir=None, extra_postargs=None):
            return ["probe.o"]

        def link_executable(self, objects, output, extra_postargs=None):
            pass

    assert probe_functions()["compiler_accepts"](Fine(), ["-O3"]) is True


class Probed:
    """A gcc-like compiler that takes the flags in `takes` and refuses the others."""

    compiler_type = "unix"

    def __init__(self, takes):
        self.takes = set(takes)

    def compile(self, sources, output_dir=None, extra_postargs=None):
        if not set(extra_postargs) <= self.takes:
            raise CompileError(f"unknown flag {extra_postargs}")
        return ["probe.o"]

    def link_executable(self, objects, output, extra_postargs=None):
        pass


class Msvc:
    compiler_type = "msvc"

    def compile(self, *args, **kwargs):  # pragma: no cover - MSVC is never probed
        raise AssertionError("MSVC probed with gcc's flags")


@pytest.mark.parametrize("environ,expected", [
    ({}, (["/O2", "/fp:precise", "/openmp"], [])),
    ({"KIT_NO_OPENMP": "1"}, (["/O2", "/fp:precise"], [])),
])
def test_msvc_gets_its_own_flags_and_is_never_probed_with_gccs(environ, expected, capsys):
    assert probe_functions()["compiler_flags"](Msvc(), environ) == expected
    assert "convolutions: building with" in capsys.readouterr().err


@pytest.mark.parametrize("takes,environ,expected", [
    # gcc: everything.
    (["-O3", "-ffp-contract=off", "-march=native", "-fopenmp"], {},
     (["-O3", "-ffp-contract=off", "-march=native", "-fopenmp"], ["-fopenmp"])),
    # clang without libomp: no OpenMP, and it says so once.
    (["-O3", "-ffp-contract=off", "-march=native"], {}, (["-O3", "-ffp-contract=off", "-march=native"], [])),
    # A compiler that cannot keep multiplies and adds apart gets no native vectors (they bring FMA).
    (["-O3", "-march=native", "-fopenmp"], {}, (["-O3", "-fopenmp"], ["-fopenmp"])),
    (["-O3", "-ffp-contract=off", "-march=native", "-fopenmp"], {"KIT_NO_NATIVE": "1", "KIT_NO_OPENMP": "1"},
     (["-O3", "-ffp-contract=off"], [])),
])
def test_a_gcc_like_compiler_gets_the_flags_it_takes(takes, environ, expected, capsys):
    assert probe_functions()["compiler_flags"](Probed(takes), environ) == expected
    said = capsys.readouterr().err
    assert said.count("convolutions: building") == 2  # one line for OpenMP, one for the vectors
    assert ("kernels run on one core" in said) == ("-fopenmp" not in expected[1])

