"""The kit's training epochs, timed in this process (sections 1 and 2 of the report): one
kit network trained epoch after epoch by NeuralNet.Train's own loop (KitRun), the table's
rows (a network by one conv method, shared by the configs that are that network), and the
round-robin timing of each architecture's kit variants and torch variants."""

import contextlib
import copy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools.benchmark.configs import has_conv, network_key, with_method
from tools.benchmark.output import log
from tools.benchmark.pytorch import torch_runs


class KitRun:
    """One kit network (NeuralNet, seed 0), trained epoch after epoch by Train's loop."""

    framework = "kit"

    def __init__(self, name, config, data_path, limit, tmpdir):
        from net import NeuralNet

        config = copy.deepcopy(config)
        config.update(_path=f"configs/{name}.yaml (benchmark copy)", data_path=str(data_path), display=False,
                      checkpoint_file=str(Path(tmpdir) / f"{name}.npz"),
                      performance_stats=str(Path(tmpdir) / f"{name}_stats.npy"))
        with contextlib.redirect_stdout(io.StringIO()):  # each layer prints its shapes
            self.net = NeuralNet(config, seed=0)
        self.net.LoadData()
        if limit:
            self.net.train_ = tuple(a[:limit[0]] for a in self.net.train_)
            self.net.validation_ = tuple(a[:limit[1]] for a in self.net.validation_)
        self.epochs = 0

    def output_dtype(self):
        """The dtype the network computes in, as its predictions show."""
        return self.net.Fprop(self.net.validation_[0][:2])[-1].dtype

    def epoch(self):
        """Seconds for one epoch as NeuralNet.Train runs it, minus its file writes and display.
        A learning-rate schedule is left out: it sets one number per layer per epoch, which
        costs nothing, and Train keeps its bookkeeping to itself."""
        net = self.net
        train_x, train_t = net.train_
        num_train, batch_size = train_x.shape[0], net.settings_.batch_size
        check = getattr(net, "_check_parameters", None)  # Train's per-step divergence check
        set_training = getattr(net, "_set_training", None)  # dropout on in the steps only
        augment, settings = None, getattr(net, "augment_", None)
        if settings is not None and settings.active:
            import net as kit_net  # the function Train calls on each training batch

            augment = kit_net.augment
            image_shape = net.settings_.image_shape
        self.epochs += 1
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # as in Train
            start = time.perf_counter()
            order = net.shuffle_rng_.permutation(num_train)
            if set_training is not None:
                set_training(True)
            ce_sum, correct = 0.0, 0
            for step in range(-(-num_train // batch_size)):
                batch = order[step * batch_size:(step + 1) * batch_size]
                x, t = train_x[batch], train_t[batch]
                if augment is not None:
                    x = augment(x, net.augment_rng_, settings, image_shape)
                states = net.Fprop(x)
                ce, c = net.ComputeLoss(states[-1], t)
                if not np.isfinite(ce):
                    raise RuntimeError(f"{net.source_}: diverged in the benchmark at step {step + 1}")
                ce_sum += ce
                correct += c
                net.Update(net.Bprop(net.ComputeDeriv(states[-1], t), states))
                if check is not None:
                    check(self.epochs, step)
            if set_training is not None:
                set_training(False)
            net.Validate(net.validation_)
            return time.perf_counter() - start


@dataclass
class Row:
    """One line of the epoch table: a network (configs that share it) by one conv method."""
    names: list
    method: str                      # 'method1', 'method2' or '' (no conv layers)
    config: dict
    kit: list = field(default_factory=list)
    kit32: list = field(default_factory=list)
    kit32_note: str = ""             # why there is no float32 time, if there is none
    torch64: list = field(default_factory=list)  # shared by the rows of one architecture
    torch32: list = field(default_factory=list)
    torch_note: str = ""


def wants_float32(row):
    """Every conv config is also timed in float32 (by both methods), and so is any config
    that ships with dtype float32."""
    return bool(row.method) or row.config.get("dtype") == "float32"


def plan_rows(configs):
    """Rows grouped by architecture: {architecture key: [Row, ...]}."""
    groups, by_key = {}, {}
    for name, config in configs.items():
        for method in (("method1", "method2") if has_conv(config) else ("",)):
            variant = with_method(config, method) if method else config
            key = network_key(variant)
            if key in by_key:
                by_key[key].names.append(name)
                continue
            row = Row([name], method, variant)
            by_key[key] = row
            groups.setdefault(network_key(variant, with_methods=False), []).append(row)
    return groups


def measure_epochs(groups, args, worker, data_path, limit, tmpdir):
    """Fill each row's times: warm-up, then args.repeat epochs round-robin per architecture,
    the kit's timed here and the torch ones (if `worker`, a TorchWorker) in the worker."""
    notes = []
    for rows in groups.values():
        runs = []  # (label, run, list the times go to)
        for row in rows:
            label = f"{'/'.join(row.names)} {row.method}".strip()
            # A config that sets its dtype is rewritten to float64 here, as the column says.
            config64 = dict(row.config, dtype="float64") if "dtype" in row.config else row.config
            runs.append((f"{label} kit float64", KitRun(row.names[0], config64, data_path, limit, tmpdir),
                         row.kit))
            if wants_float32(row):
                try:
                    run32 = KitRun(row.names[0], dict(row.config, dtype="float32"), data_path, limit, tmpdir)
                except ValueError as e:  # config.ConfigError: the kit does not take the key (yet)
                    row.kit32_note = "n/a"
                    # The message's list of known keys would only lengthen the note.
                    reason = str(e).split(": ", 1)[-1].split(" (known keys")[0]
                    notes.append(f"kit float32: n/a, the kit refuses `dtype: float32` ({reason})")
                else:
                    if run32.output_dtype() != np.float32:
                        row.kit32_note = "n/a"
                        notes.append(f"kit float32: `dtype: float32` is accepted but {label} still computes "
                                     f"in {run32.output_dtype()}; not measured")
                    else:
                        runs.append((f"{label} kit float32", run32, row.kit32))
        if worker is not None:
            runs += torch_runs(worker, rows, runs[0][1].net, notes, tmpdir)
        for label, run, _ in runs:
            log(f"{label}: warm-up epoch")
            run.epoch()
        previous = None
        for r in range(args.repeat):
            for label, run, times in runs:
                if previous is not None and previous != run.framework:
                    # OpenBLAS and torch keep their worker threads spinning a little after a
                    # call; a pause keeps one framework's spinning (in this process or in the
                    # torch worker) out of the other's epoch.
                    time.sleep(0.1)
                previous = run.framework
                times.append(run.epoch())
                log(f"{label}: epoch {r + 1}/{args.repeat}: {times[-1]:.3f} s")
    return notes
