"""Staff only (it holds the reference answers): typical mistakes in the four pieces, each
pasted into a copy of the kit, must make grad_check.py FAIL and name the piece at fault;
the reference kit must PASS every grad-check config.

The mistakes and what grad_check prints for each are the README's table ("When grad_check
fails"): the test reads it and checks every row against grad_check's real output (but for
the line numbers in error lines), so the table cannot drift from the code.
`python tests/kit/test_grad_check_mistakes.py` prints the rows as grad_check prints them now.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.course.regions import marked_regions

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
README_SECTION = "## When grad_check fails"
PIECE_FILES = {"FCLayer": "fc_layer.py", "ConvLayer": "conv_layer.py"}

# README's mistake -> (piece, config, text in the reference piece, what replaces it).
MISTAKES = {
    "FC: weights not transposed": (
        "FCLayer.ComputeUp", "logreg", "self.w_.T", "self.w_"),
    "FC: outputs transposed": (
        "FCLayer.ComputeUp", "logreg", "inputs @ self.w_.T + self.b_", "self.w_ @ inputs.T + self.b_.T"),
    "FC: bias forgotten": (
        "FCLayer.ComputeUp", "logreg", " + self.b_", ""),
    "FC: mean over the batch for the sum": (
        "FCLayer.ComputeDown", "logreg", "dw = deriv.T @ inputs\ndb = deriv.sum(axis=0)",
        "dw = deriv.T @ inputs / batch_size\ndb = deriv.mean(axis=0)"),
    "FC: db summed over the wrong axis": (
        "FCLayer.ComputeDown", "logreg", "deriv.sum(axis=0)", "deriv.sum(axis=1)"),
    "FC: a transposed weight derivative": (
        "FCLayer.ComputeDown", "logreg", "deriv.T @ inputs", "inputs.T @ deriv"),
    "FC: no `is_input_` test": (
        "FCLayer.ComputeDown", "logreg", "if not self.is_input_:\n    dC_by_dinputs", "dC_by_dinputs"),
    "FC: the `is_input_` test the wrong way round": (
        "FCLayer.ComputeDown", "net_1layer", "if not self.is_input_:", "if self.is_input_:"),
    "conv: no flip in the forward pass": (
        "ConvLayer.ComputeUp", "convnet_gradcheck", "w_flip[np.newaxis]", "self.w_.reshape(K, C, k, k)[np.newaxis]"),
    "conv: forward summed over the output channels": (
        "ConvLayer.ComputeUp", "convnet_gradcheck_deep", ".sum(axis=2)", ".sum(axis=1)"),
    "conv: input derivative with padding p, not k - p - 1": (
        "ConvLayer.ComputeDown", "convnet_gradcheck_pad0", "padding=k - self.padding_ - 1", "padding=self.padding_"),
    "conv: input derivative with a flipped kernel": (
        "ConvLayer.ComputeDown", "convnet_gradcheck_deep", "w[np.newaxis]", "w[np.newaxis, :, :, ::-1, ::-1]"),
    "conv: dw not summed over the batch": (
        "ConvLayer.ComputeDown", "convnet_gradcheck", "padding=self.padding_).sum(axis=0)", "padding=self.padding_)"),
    "conv: dw without the flip of the derivatives": (
        "ConvLayer.ComputeDown", "convnet_gradcheck", "deriv_flip[:, :, np.newaxis]", "deriv[:, :, np.newaxis]"),
    "conv: dw with a flip along one axis only": (
        "ConvLayer.ComputeDown", "convnet_gradcheck_stride2", "deriv_flip[:, :, np.newaxis]",
        "deriv[:, :, ::-1][:, :, np.newaxis]"),
}


def readme_table():
    """{mistake: (config, printed line)} from the README's table."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[1].startswith("`") and cells[2].startswith("`"):
            rows[cells[0]] = (cells[1].strip("`"), cells[2].strip("`"))
    return rows


def matches_readme(cell, printed):
    """True if grad_check printed the README's line: its "line N" is any line number, and its
    "…" stands for text left out (shapes of five axes, which would show method 2's broadcasting)."""
    pattern = "".join(r"\d+" if part == "N" else ".+" if part == "…" else re.escape(part)
                      for part in re.split(r"(?<=\.py, line )(N)(?=\))|(…)", cell) if part)
    return re.fullmatch(pattern, printed) is not None


def copy_kit(target):
    """The kit's Python files, configs and compiled extension, in `target` (no data, no git)."""
    shutil.copytree(REPO_ROOT, target, ignore=shutil.ignore_patterns(
        ".git", "runs", "tests", "docs", "__pycache__", "*.npz", "*.npy", "*.png", "*.gz", "build"))
    return target


def inject(kit, piece, old, new):
    """Replace `old` by `new` in the reference region of `piece` in the kit's copy."""
    path = kit / PIECE_FILES[piece.split(".")[0]]
    lines = path.read_text().splitlines(keepends=True)
    (region,) = [r for r in marked_regions("".join(lines), path.name) if r.piece == piece]
    indent = re.match(r"\s*", region.lines[0]).group(0)
    assert old in region.text, f"{old!r} is not in the reference {piece}"
    mistaken = region.text.replace(old, new)
    lines[region.first - 1:region.last] = [indent + line + "\n" if line else "\n" for line in mistaken.split("\n")]
    path.write_text("".join(lines))


def grad_check(kit, config):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "grad_check.py", f"configs/{config}.yaml"], cwd=kit, env=env,
                          capture_output=True, text=True, timeout=120)


def verdict_line(result):
    """The line grad_check prints before its final FAILED: the first naming a piece."""
    lines = result.stdout.strip().splitlines()
    return next(line for line in lines if line.startswith(("most likely at fault:", "error in", "not implemented")))


def test_the_readme_table_lists_every_mistake_the_test_injects():
    assert sorted(readme_table()) == sorted(MISTAKES)
    assert len(MISTAKES) >= 10


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_fails_the_check_naming_its_piece_as_the_readme_says(mistake, tmp_path):
    piece, config, old, new = MISTAKES[mistake]
    kit = copy_kit(tmp_path / "kit")
    inject(kit, piece, old, new)
    result = grad_check(kit, config)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "FAILED"
    line = verdict_line(result)
    assert f"{piece} ({PIECE_FILES[piece.split('.')[0]]}" in line, line
    # Line numbers move when the code around the pieces does: the rest must be as printed.
    assert readme_table()[mistake][0] == f"{config}.yaml"
    assert matches_readme(readme_table()[mistake][1], line), line


GRADCHECK_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("convnet_gradcheck*.yaml")) + ["logreg", "net_1layer"]


@pytest.mark.parametrize("config", GRADCHECK_CONFIGS)
def test_the_reference_kit_passes_every_grad_check_config(config):
    result = grad_check(REPO_ROOT, config)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "PASSED"


def test_the_shipped_grad_check_configs_have_hidden_method2_layers_with_pad_0_and_stride_2():
    import yaml

    hidden = [layer for path in CONFIG_DIR.glob("convnet_gradcheck*.yaml")
              for layer in yaml.safe_load(path.read_text())["network"][1:]
              if layer.get("convolve_method") == "method2"]
    settings = {(layer["kernel_size"], layer.get("padding", 0), layer.get("stride", 1)) for layer in hidden}
    assert {(5, 0, 1), (3, 0, 1)} <= settings and any(s == 2 for _, _, s in settings)


if __name__ == "__main__":
    import tempfile

    for mistake, (piece, config, old, new) in MISTAKES.items():
        with tempfile.TemporaryDirectory() as tmp:
            kit = copy_kit(Path(tmp) / "kit")
            inject(kit, piece, old, new)
            print(f"| {mistake} | `{config}.yaml` | `{verdict_line(grad_check(kit, config))}` |")
