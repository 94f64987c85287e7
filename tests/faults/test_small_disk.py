"""train.py on a real small disk: a tmpfs of a few kilobytes (or of a few inodes) holds its
outputs, so that the disk fills at some write of the run, as it does on a full laptop. At each
size the run either finishes or ends as scripts.check_after_fault requires. Needs the right to
mount (root, or a user namespace); skipped otherwise, saying so."""

import subprocess
import sys

import fault_scenarios as scripts
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs: Linux")


def mount_tmpfs(folder, options):
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or done.returncode})")


@pytest.fixture
def small_disk(tmp_path):
    mounted = []

    def mount(options):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        mount_tmpfs(folder, options)
        mounted.append(folder)
        return folder
    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# Sizes around those of the run's files (a stats file of 200 bytes, checkpoints of 21 KB,
# last states of 45 KB, the display's PNG of some 30 KB): each fills the disk at another write.
SIZES = ["8k", "24k", "48k", "72k", "100k", "140k", "200k"]
INODES = [2, 3, 4, 5, 6]


@pytest.mark.parametrize("options", [f"size={s}" for s in SIZES] + [f"nr_inodes={n}" for n in INODES])
def test_train_on_a_disk_that_fills_ends_in_one_true_line(options, small_disk, small_npz, tmp_path):
    scenario = scripts.BY_NAME["train"]
    root = tmp_path / "run"
    scripts.set_up(scenario, root, small_npz)
    disk = small_disk(options)
    (root / "outputs").rmdir()
    (root / "outputs").symlink_to(disk)  # the outputs on the small disk, the inputs not
    inputs, before = scripts.snapshot(root / "inputs"), scripts.snapshot(disk)
    run = scenario.run(root)
    problems = scripts.check_after_fault(scenario, root, run, inputs, before, clean_outputs={})
    assert not problems, f"{options}: status {run.status}\n" + "\n".join(problems)
    if run.status != 0:
        assert "No space left on device" in run.stderr or "Disk quota" in run.stderr, run.stderr
