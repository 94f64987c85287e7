"""The Examples of the compiled module's docstrings, run as doctests: each public function
has some, and every one prints what the docstring says it prints."""

import doctest
import inspect

import numpy as np
import pytest

import convolutions

FINDER = doctest.DocTestFinder()


def public_routines():
    return sorted(name for name, value in vars(convolutions).items()
                  if not name.startswith("_") and inspect.isroutine(value))


def test_all_lists_every_public_function():
    assert sorted(convolutions.__all__) == public_routines()


def test_doctest_finds_the_examples_of_every_public_function_in_the_module():
    # Cython's functions are not Python functions: check that doctest's own search of the
    # module (what doctest.testmod runs) reaches them.
    found = {test.name: len(test.examples) for test in FINDER.find(convolutions)}
    for name in convolutions.__all__:
        assert found.get(f"convolutions.{name}", 0) >= 1, name


@pytest.mark.parametrize("name", sorted(convolutions.__all__))
def test_the_examples_run_and_print_what_the_docstring_shows(name):
    # The namespace the module docstring says the examples assume.
    globs = {"np": np}
    exec("from convolutions import *", globs)
    runner = doctest.DocTestRunner()
    for test in FINDER.find(getattr(convolutions, name), name, module=convolutions, globs=globs):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted >= 1, f"{name} has no examples"
    assert results.failed == 0, (f"{name}: {results.failed} of {results.attempted} examples failed "
                                 "(doctest's report: captured stdout)")
