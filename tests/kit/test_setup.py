"""setup.py's compiler probes: any failure of the probe compiler is a refusal (a serial build
with its one-line notice), never a traceback, whichever module its error class comes from."""

import ast

from conftest import REPO_ROOT


def probe_functions(new_compiler):
    """setup.py's compiler_accepts (and what it calls), with `new_compiler` as its compiler
    factory, taken from its source without running the build the file runs when executed."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    wanted = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.Import, ast.ImportFrom))
              and not (isinstance(node, ast.ImportFrom) and node.module in ("Cython.Build", "setuptools"))]
    namespace = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "setup.py", "exec"), namespace)
    namespace["new_compiler"] = new_compiler
    namespace["customize_compiler"] = lambda compiler: None
    return namespace


class CompileError(Exception):
    """Like distutils.errors.CompileError, from another copy of distutils than setup.py's."""


class ClangWithoutOmpH:
    def compile(self, sources, output_dir=None, extra_postargs=None):
        raise CompileError("probe.c:1:10: fatal error: 'omp.h' file not found")

    def link_executable(self, *args, **kwargs):  # pragma: no cover - compile fails first
        raise AssertionError("linked after a failed compile")


def test_a_probe_failing_with_a_foreign_compile_error_is_a_refusal_not_a_traceback():
    namespace = probe_functions(ClangWithoutOmpH)
    assert namespace["compiler_accepts"](["-fopenmp"], namespace.get("OPENMP_PROBE", "#include <omp.h>\n")) is False


def test_a_probe_that_compiles_and_links_is_accepted(tmp_path):
    class Fine:
        def compile(self, sources, output_dir=None, extra_postargs=None):
            return ["probe.o"]

        def link_executable(self, objects, output, extra_postargs=None):
            pass

    assert probe_functions(Fine)["compiler_accepts"](["-O3"]) is True

