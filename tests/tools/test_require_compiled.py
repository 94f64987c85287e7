"""The grader and the benchmark need the compiled kernels: with their numpy version in its place
(convolutions.COMPILED False), each stops in one line naming the build command, exit status 2."""

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

# The entry script run as `python tools/<script>`, with the kernels' COMPILED set to False first.
RUN = """
import runpy, sys
sys.path[:0] = [{root!r}, {root!r} + "/tools"]
import convolutions
convolutions.COMPILED = False
sys.argv = {argv!r}
runpy.run_path({script!r}, run_name="__main__")
"""


@pytest.mark.parametrize("script, args", [("autograde.py", ["no_such_submission"]), ("bench.py", ["--quick"])])
def test_the_grader_and_the_benchmark_refuse_the_numpy_kernels_in_one_line(script, args, tmp_path):
    path = str(REPO_ROOT / "tools" / script)
    code = RUN.format(root=str(REPO_ROOT), argv=[path] + args, script=path)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"{script}: error: needs the compiled kernels (convolutions); build them with: "
                             "python setup.py build_ext --inplace\n")
