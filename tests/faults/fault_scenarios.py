"""Every script and tool as the fault suites run it: in a subprocess, on inputs of its own in a
folder `inputs/`, its outputs in a folder `outputs/`, and what must hold after any fault.

A `Scenario` knows its command line, how to make its inputs, and which messages it may end
with; `Run` is one finished run; `check_after_fault` is the contract of docs/reliability.md:
one line, a non-zero status, no traceback, inputs unchanged, no stale lock or temporary
file, every file whole, and a message true to what is on disk.
"""

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MIRROR_README = "zip.train.gz"

LOGREG_CONFIG = """\
max_epochs: {epochs}
batch_size: 100
data_path: {data}
checkpoint_file: {out}/runs/l.npz
performance_stats: {out}/runs/l_stats.npy
input_image_size_y: 16
input_image_size_x: 16
input_num_channels: 1
display: {display}
display_after: 1
network:
  - name: output
    type: FC
    num_channels: 10
    init_wt: 0.05
    epsilon: 0.02
    momentum: 0.9
"""


@dataclasses.dataclass
class Run:
    status: int
    stdout: str
    stderr: str

    @property
    def lines(self):
        return [line for line in self.stderr.splitlines() if line.strip()]


@dataclasses.dataclass
class Scenario:
    """One script as a user runs it. `argv(inputs, outputs)` is its command line after the
    interpreter; `prepare(inputs, outputs, data)` makes its inputs (and any earlier outputs);
    `prog` starts each of its messages."""
    name: str
    prog: str
    argv: object
    prepare: object = None
    writes: bool = True  # whether it writes files (the errno suite runs only these)
    slow: bool = False   # seconds rather than a fraction of one: fewer random points
    heavy: bool = False  # several seconds a run: its errno runs only with -m slow

    def run(self, root, env_extra=None, stdout=subprocess.PIPE, timeout=300, signal_after=None):
        return run_script(self.argv(root / "inputs", root / "outputs"), root, env_extra, stdout, timeout)


def environment(root, extra=None):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", USPS_DOWNLOADS=str(root / "outputs" /
                                                                                             "downloads"))
    env.pop("DISPLAY", None)
    env.pop("LD_PRELOAD", None)
    env.update(extra or {})
    return env


def run_script(argv, root, env_extra=None, stdout=subprocess.PIPE, timeout=300):
    done = subprocess.run([sys.executable, *argv], cwd=root / "inputs", env=environment(root, env_extra),
                          stdout=stdout, stderr=subprocess.PIPE, timeout=timeout)
    return Run(done.returncode, (done.stdout or b"").decode(errors="replace"), done.stderr.decode(errors="replace"))


def _train_config(epochs=2, display=True):
    def prepare(inputs, outputs, data):
        (inputs / "l.yaml").write_text(LOGREG_CONFIG.format(epochs=epochs, data=data, out=outputs,
                                                            display=display))
    return prepare


def _trained(inputs, outputs, data):
    """A config whose model is trained, its files among the inputs (for report and evaluate)."""
    (inputs / "l.yaml").write_text(LOGREG_CONFIG.format(epochs=2, data=data, out=inputs, display=False))
    run = run_script([str(REPO / "train.py"), str(inputs / "l.yaml")], inputs.parent)
    assert run.status == 0, run.stderr


def _answers(inputs, outputs, data):
    (inputs / "answers.md").write_text("# Answers\n\nSome words.\n")


def _mirror_copy(inputs, outputs, data):
    """USPS's two files, copied among the inputs (a mirror is an input too)."""
    mirror = mirror_folder()
    (inputs / "mirror").mkdir()
    for name in ("zip.train.gz", "zip.test.gz"):
        (inputs / "mirror" / name).write_bytes((mirror / name).read_bytes())


def mirror_folder():
    """The USPS mirror the suite reads, or None."""
    for candidate in (os.environ.get("USPS_MIRROR"), REPO.parent / "shared" / "data" / "usps",
                      REPO / "data" / "downloads"):
        if candidate and (Path(candidate) / MIRROR_README).is_file() and (Path(candidate) / "zip.test.gz").is_file():
            return Path(candidate).resolve()
    return None


def _handed_out(inputs, outputs, data):
    """A student kit, as tools/handout.py writes it (for leaks.py)."""
    run = run_script([str(REPO / "tools" / "handout.py"), str(inputs / "kit"), "--no-zip"], inputs.parent)
    assert run.status == 0, run.stderr


def _submission(inputs, outputs, data):
    """A student's submission: the reference's two files (for the grader)."""
    (inputs / "alice").mkdir()
    for name in ("fc_layer.py", "conv_layer.py"):
        (inputs / "alice" / name).write_bytes((REPO / name).read_bytes())


def _synthetic_mirror(name):
    """A mirror of data set `name`'s published files, synthetic, at a thousandth of their counts
    (tests/published_formats.py), among the inputs."""
    def prepare(inputs, outputs, data):
        sys.path.insert(0, str(REPO / "tests"))
        import published_formats
        published_formats.write_mirror(inputs / "mirror", name, 0.001, np.random.default_rng(0))
    return prepare


def _kit(name):
    return str(REPO / name)


SCENARIOS = [
    Scenario("train", "train.py", lambda i, o: [_kit("train.py"), str(i / "l.yaml")], _train_config()),
    Scenario("evaluate", "evaluate.py", lambda i, o: [_kit("evaluate.py"), str(i / "l.yaml")], _trained,
             writes=False),
    Scenario("grad_check", "grad_check.py",
             lambda i, o: [_kit("grad_check.py"), str(REPO / "configs" / "convnet_gradcheck_deep.yaml")],
             writes=False),
    Scenario("play_with_convolutions", "play_with_convolutions.py",
             lambda i, o: [_kit("play_with_convolutions.py"), "--out", str(o / "figures" / "p.png")]),
    Scenario("usps", "usps", lambda i, o: [_kit("data/usps.py"), "--mirror", str(i / "mirror"), "--out",
                                           str(o / "data" / "u.npz")], _mirror_copy),
    *[Scenario(name, name, lambda i, o, name=name: [_kit(f"data/{name}.py"), "--mirror", str(i / "mirror"),
                                                    "--no-checksum", "--out", str(o / "data" / f"{name}.npz")],
               _synthetic_mirror(name)) for name in ("mnist", "norb", "cifar10", "cifar100", "svhn")],
    Scenario("report", "report.py", lambda i, o: [_kit("tools/report.py"), str(i / "l.yaml"), "--plot",
                                                  str(o / "plots" / "curves.png")], _trained),
    Scenario("analyze", "analyze.py", lambda i, o: [_kit("tools/analyze.py"), str(REPO / "configs" / "convnet2.yaml")],
             writes=False),
    Scenario("pool_ties", "pool_ties.py", lambda i, o: [_kit("tools/pool_ties.py"), str(i / "l.yaml")], _trained,
             writes=False),
    Scenario("robustness", "robustness.py", lambda i, o: [_kit("tools/robustness.py"), str(i / "l.yaml"),
                                                          "--copies", "2"], _trained, writes=False),
    Scenario("handout", "handout.py", lambda i, o: [_kit("tools/handout.py"), str(o / "kit")], slow=True),
    Scenario("leaks", "leaks.py", lambda i, o: [_kit("tools/leaks.py"), str(i / "kit")], _handed_out,
             writes=False, slow=True),
    Scenario("submit", "submit.py", lambda i, o: [_kit("tools/submit.py"), "--configs", str(REPO / "configs"),
                                                  "--out", str(o / "submission")], _answers),
    Scenario("autograde", "autograde.py", lambda i, o: [_kit("tools/autograde.py"), str(i / "alice"), "--out",
                                                        str(o / "grades"), "--jobs", "1", "--seed", "0"],
             _submission, slow=True, heavy=True),
    Scenario("bench", "bench.py", lambda i, o: [_kit("tools/bench.py"), "--quick", "--only", "logreg",
                                                "--no-torch", "--data", str(o.parent / "data.npz")],
             writes=False),
]
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def set_up(scenario, root, data):
    """Make root/inputs (the scenario's inputs, data.npz beside them) and an empty root/outputs."""
    (root / "inputs").mkdir(parents=True)
    (root / "outputs").mkdir()
    local = root / "data.npz"
    local.write_bytes(Path(data).read_bytes())
    if scenario.prepare:
        scenario.prepare(root / "inputs", root / "outputs", local)


def snapshot(folder):
    """{relative path: sha256} of every file under `folder` (links as their targets' names)."""
    folder = Path(folder)
    seen = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            seen[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            seen[rel] = "dir"
    return seen


def leftovers(folder):
    """Temporary and lock files left under `folder`, and empty folders under its outputs."""
    folder = Path(folder)
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".part") or
            (p.name.startswith(".") and p.name.endswith(".lock"))] + \
        [f"{p} (an empty folder)" for p in (folder / "outputs").rglob("*") if p.is_dir() and not any(p.iterdir())]


def broken_files(folder):
    """Files under `folder` that are not whole (an .npz, .npy, .png, .zip that does not read)."""
    broken = []
    for path in Path(folder).rglob("*"):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".npz":
                with np.load(path) as arrays:
                    for key in arrays.files:
                        arrays[key]
            elif path.suffix == ".npy":
                np.load(path)
            elif path.suffix == ".png":
                data = path.read_bytes()
                assert data.startswith(b"\x89PNG") and data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
            elif path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    assert archive.testzip() is None
        except Exception as e:
            broken.append(f"{path}: {type(e).__name__}: {e}")
    return broken


TRAIN_CLAIMS = {
    "stats": re.compile(r"stopped after epoch (\d+): stats in (\S+?);"),
    "best": re.compile(r"best checkpoint \(epoch (\d+)[^)]*\) in (\S+?)[;: ]"),
    "last": re.compile(r"the last state holds epoch (\d+)"),
}


def check_truth(line, before, outputs):
    """What `line` says of the disk holds: a file 'unchanged' is as it was, one 'not made' is
    absent, 'nothing was written' leaves the outputs as they were, and train.py's epochs are
    those its files hold. Returns a list of what does not hold."""
    wrong = []
    after = snapshot(outputs)
    for path in re.findall(r"cannot write (\S+) \([^)]*\); what was there is unchanged", line):
        # Unchanged since the write began: it must be there still (and whole: broken_files).
        if not os.path.lexists(path):
            wrong.append(f"{path} said unchanged, but it is gone")
    for path in re.findall(r"cannot write (\S+) \([^)]*\); no file was made", line):
        if os.path.lexists(path):
            wrong.append(f"{path} said not made, but it is there")
    if re.search(r"nothing was (trained or )?(read or )?written|nothing was done", line):
        made = {rel for rel in after if after[rel] != before.get(rel)}
        if made:
            wrong.append(f"said nothing was written, but these were: {sorted(made)}")
    match = TRAIN_CLAIMS["stats"].search(line)
    if match:
        rows = len(np.load(match.group(2)))
        if rows != int(match.group(1)):
            wrong.append(f"said stopped after epoch {match.group(1)}, the stats hold {rows} epochs")
    match = TRAIN_CLAIMS["best"].search(line)
    stats = re.search(r"stats in (\S+?);", line)
    if match and stats:
        accuracy = re.search(r"validation accuracy ([0-9.]+)", line)
        rows = np.load(stats.group(1))
        epoch = int(match.group(1))
        if epoch > len(rows) or (accuracy and f"{rows[epoch - 1][3]:.4f}" != accuracy.group(1)):
            wrong.append(f"said the best checkpoint is epoch {epoch}, which the stats do not show")
    match = TRAIN_CLAIMS["last"].search(line)
    if match:
        last = Path(outputs) / "runs" / "l_last.npz"
        with np.load(last) as state:
            held = int(state["progress"][0])
        if held != int(match.group(1)):
            wrong.append(f"said the last state holds epoch {match.group(1)}, it holds {held}")
    if "no last state was written" in line and (Path(outputs) / "runs" / "l_last.npz").exists():
        wrong.append("said no last state was written, but it is there")
    if "--resume" in line and "goes on from there" in line or "go on with" in line:
        if not (Path(outputs) / "runs" / "l_last.npz").exists():
            wrong.append("advised --resume without a last state")
    return wrong


def check_after_fault(scenario, root, run, inputs_before, outputs_before, clean_outputs):
    """The contract after a fault, as a list of what does not hold (empty: all holds).
    A run that still ends with 0 must have written every output of a clean run, whole."""
    problems = []
    text = run.stderr
    if "Traceback" in text:
        problems.append("a traceback:\n" + text[-2000:])
    if snapshot(root / "inputs") != inputs_before:
        problems.append("the inputs changed")
    problems += [f"left behind: {p}" for p in leftovers(root)]
    problems += [f"not whole: {b}" for b in broken_files(root / "outputs")]
    if run.status == 0:
        missing = sorted(set(clean_outputs) - set(snapshot(root / "outputs")))
        if missing:
            problems.append(f"exit status 0, but these outputs are missing: {missing}")
        return problems
    own = [line for line in run.lines if not line.startswith("bench:")]
    if len(own) != 1:
        problems.append(f"{len(own)} lines on stderr, not one:\n{text[-2000:]}")
    elif not own[0].startswith(scenario.prog + ":"):
        problems.append(f"the line does not start with {scenario.prog}: {own[0]}")
    else:
        problems += check_truth(own[0], outputs_before, root / "outputs")
    return problems
