"""Every script and tool in an environment that cannot show its paths: a folder whose name
has an accent and a CJK character, under a terminal encoding of ASCII (PYTHONIOENCODING, as
LANG=C gives without Python's UTF-8 coercion), and the C locale with UTF-8 mode and coercion
off. The work is done and the paths are printed with escapes, or (where a UTF-8 path from a
config cannot be named in ASCII at all) one line says so: never a traceback."""

import fault_scenarios as scripts
import pytest

ENVIRONMENTS = {"ascii terminal": {"PYTHONIOENCODING": "ascii"},
                "C locale without UTF-8 mode": {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
                                                "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("name", [s.name for s in scripts.SCENARIOS if s.name != "bench"])
def test_paths_the_terminal_cannot_show_are_printed_with_escapes(name, environment, tmp_path, small_npz):
    scenario = scripts.BY_NAME[name]
    root = tmp_path / "données-数据"
    scripts.set_up(scenario, root, small_npz)
    run = scenario.run(root, ENVIRONMENTS[environment])
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    if environment == "ascii terminal":
        assert run.status == 0, run.stderr
    else:  # paths from a UTF-8 config may not be nameable in ASCII at all: one line then
        assert run.status == 0 or len(run.lines) == 1, run.stderr
