"""The same networks in PyTorch, for the epoch table's comparison. torch never loads in the
process that times the kit (its OpenMP runtime would be the one the kit's compiled kernels
share, and on a small machine it makes them several times slower): it runs in a child,
`python -m tools.benchmark.pytorch` (the worker below), that the bench asks for one epoch at a
time. Both ends are here: the worker (TorchRun, torch_worker) and the parent's (TorchWorker,
TorchEpochs, torch_runs, check_torch_forward)."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tools.benchmark.configs import KIT, layer_shapes, layer_window, load_arrays
from tools.benchmark.machine import HELPER_PIDS

FORWARD_CHECK_IMAGES = 100
FORWARD_DIFFS = []  # max |kit - torch| softmax output of each architecture, for the table's note


def import_torch(threads):
    """(torch module or None, reason it is missing). Only the torch worker calls this."""
    try:
        import torch
    except Exception as e:  # not installed, or a broken install (a missing shared library)
        return None, f"{type(e).__name__}: {e}"
    torch.set_num_threads(threads)
    return torch, None


def build_torch_model(torch, config, params, dtype):
    """(nn.Sequential, SGD optimizer) of the config's network, starting from the kit's
    parameters `params` ({'<layer>_w': ..., '<layer>_b': ...})."""
    nn = torch.nn
    modules, groups, flat = [], [], False
    layers = layer_shapes(config)
    for i, (layer, (c, h, w), (k_out, _, _)) in enumerate(layers):
        kind, last = layer["type"], i == len(layers) - 1
        if kind == "DROPOUT":
            modules.append(nn.Dropout(float(layer["dropout_rate"])))
            continue
        if kind not in ("MAXPOOL", "CONVOLUTIONAL", "FC"):
            raise ValueError(f"no PyTorch counterpart for layer type {kind}")
        if kind == "MAXPOOL":
            k, s, p = layer_window(layer)
            modules.append(nn.MaxPool2d(k, stride=s, padding=p))
            continue
        if kind == "CONVOLUTIONAL":
            k, s, p = layer_window(layer)
            module = nn.Conv2d(c, k_out, k, stride=s, padding=p, dtype=dtype)
            # The kit's filter row f is (C, k, k) flattened, and both cross-correlate.
            weight = params[f"{layer['name']}_w"].reshape(k_out, c, k, k)
        else:
            if not flat:
                modules.append(nn.Flatten())  # (N, C, H, W) -> (N, C*H*W), the kit's order
                flat = True
            module = nn.Linear(c * h * w, k_out, dtype=dtype)
            weight = params[f"{layer['name']}_w"]
        # Made in `dtype` from the start: a float32 module would round the kit's float64 weights.
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            module.bias.copy_(torch.from_numpy(params[f"{layer['name']}_b"].reshape(-1)))
        modules.append(module)
        if not last:
            modules.append(nn.ReLU())
        # The kit's update, v = momentum * v - epsilon * (dw + l2 * w); w += v, is torch's SGD
        # with lr = epsilon (its velocity is the kit's divided by -epsilon). No decay on biases.
        lr, momentum = float(layer["epsilon"]), float(layer.get("momentum", 0.0))
        groups.append({"params": [module.weight], "lr": lr, "momentum": momentum,
                       "weight_decay": float(layer.get("l2_decay", 0.0))})
        groups.append({"params": [module.bias], "lr": lr, "momentum": momentum, "weight_decay": 0.0})
    model = nn.Sequential(*modules)
    return model, torch.optim.SGD(groups, lr=groups[0]["lr"])


class TorchRun:
    """The config's network in PyTorch, trained like the kit trains it."""

    framework = "torch"

    def __init__(self, torch, config, params, arrays, limit, dtype):
        self.torch, self.functional = torch, torch.nn.functional
        self.model, self.optimizer = build_torch_model(torch, config, params, dtype)
        shape = (-1, int(config.get("input_num_channels", 1)), int(config.get("input_image_size_y", 16)),
                 int(config.get("input_image_size_x", 16)))

        def tensors(x, t, n):
            x, t = (x[:n], t[:n]) if n else (x, t)
            return (torch.from_numpy(np.ascontiguousarray(x.reshape(shape))).to(dtype),
                    torch.from_numpy(t.argmax(axis=1)))

        self.train = tensors(*arrays["train"], limit[0] if limit else None)
        self.validation = tensors(*arrays["validation"], limit[1] if limit else None)
        self.batch_size = int(config.get("batch_size", 100))
        self.rng = np.random.default_rng(0)

    def validation_probabilities(self, n):
        """Softmax outputs (numpy) of the model on the first n validation images."""
        self.model.eval()
        with self.torch.no_grad():
            return self.torch.softmax(self.model(self.validation[0][:n]), dim=1).numpy()

    def epoch(self):
        torch, functional, model, optimizer = self.torch, self.functional, self.model, self.optimizer
        (train_x, train_y), (val_x, val_y) = self.train, self.validation
        n, bs = train_x.shape[0], self.batch_size
        start = time.perf_counter()
        order = torch.from_numpy(self.rng.permutation(n))
        ce_sum, correct = 0.0, 0
        model.train()  # dropout on, as the kit's training steps
        for step in range(-(-n // bs)):
            batch = order[step * bs:(step + 1) * bs]
            x, y = train_x[batch], train_y[batch]
            logits = model(x)
            loss = functional.cross_entropy(logits, y)  # mean over the batch, as the kit's derivatives
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # The kit sums the epoch's cross entropy and correct answers; so does this.
            ce_sum += loss.item() * len(batch)
            correct += int((logits.argmax(dim=1) == y).sum())
        model.eval()
        with torch.no_grad():
            val_ce, val_correct = 0.0, 0
            for first in range(0, val_x.shape[0], bs):
                logits = model(val_x[first:first + bs])
                y = val_y[first:first + bs]
                val_ce += functional.cross_entropy(logits, y, reduction="sum").item()
                val_correct += int((logits.argmax(dim=1) == y).sum())
        return time.perf_counter() - start


def torch_worker(requests=None, answers=None):
    """The torch side, run as `python -m tools.benchmark.pytorch`: one JSON request a line
    on stdin, one JSON answer a line on stdout. Between requests it blocks reading stdin, so
    it takes no CPU while the parent times the kit.

    {"cmd": "init", "threads", "data", "limit"} -> {"ok", "version", "threads"} or {"ok": false,
    "error"}; {"cmd": "build", "id", "config", "params" (.npz path), "check" (n)} -> {"ok",
    "runs": {dtype: run id}, "probabilities": the float64 model's softmax on the first n
    validation images} or {"ok": false, "error"} (no counterpart of a layer); {"cmd": "epoch",
    "run"} -> {"ok", "seconds"}; {"cmd": "quit"} or the end of stdin ends it."""
    if answers is None:
        # The answers own the real stdout; anything else printed here (torch, C code) goes to stderr.
        answers = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    requests = sys.stdin if requests is None else requests

    def answer(**message):
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    torch, arrays, limit, runs = None, None, None, {}
    while True:
        line = requests.readline()  # blocks: no spinning between requests
        if not line:
            return 0
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd == "quit":
            answer(ok=True)
            return 0
        if cmd == "init":
            torch, error = import_torch(int(request["threads"]))
            if torch is None:
                answer(ok=False, error=error)
                continue
            arrays, limit = load_arrays(request["data"]), request["limit"]
            answer(ok=True, version=torch.__version__, threads=torch.get_num_threads())
        elif cmd == "build":
            with np.load(request["params"], allow_pickle=False) as f:
                params = {k: f[k] for k in f.files}
            try:
                run64 = TorchRun(torch, request["config"], params, arrays, limit, torch.float64)
            except ValueError as e:  # a layer type without a counterpart
                answer(ok=False, error=str(e))
                continue
            probabilities = run64.validation_probabilities(int(request["check"]))
            run32 = TorchRun(torch, request["config"], params, arrays, limit, torch.float32)
            ids = {dtype: f"{request['id']} {dtype}" for dtype in ("float64", "float32")}
            runs[ids["float64"]], runs[ids["float32"]] = run64, run32
            # json writes floats with repr: the probabilities arrive bit for bit.
            answer(ok=True, runs=ids, probabilities=probabilities.tolist())
        elif cmd == "epoch":
            answer(ok=True, seconds=runs[request["run"]].epoch())
        else:
            answer(ok=False, error=f"unknown request {cmd!r}")


class TorchWorker:
    """The parent's end of the torch worker: this process never imports torch."""

    def __init__(self, process):
        self.process = process
        self.version = self.threads = None

    @classmethod
    def start(cls, threads, data_path, limit, kit_defaults):
        """(worker or None, reason torch is missing). `kit_defaults`: the variables the bench
        set for the kit, which the worker starts without."""
        # The environment the bench was started with: the kit's defaults are not torch's.
        env = {k: v for k, v in os.environ.items() if k not in kit_defaults}
        try:
            process = subprocess.Popen([sys.executable, "-m", "tools.benchmark.pytorch"], cwd=KIT, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        except OSError as e:
            return None, f"{type(e).__name__}: {e}"
        HELPER_PIDS.add(process.pid)
        worker = cls(process)
        try:
            reply = worker.ask(cmd="init", threads=threads, data=str(data_path), limit=limit)
        except RuntimeError as e:  # torch's import killed the child (a broken install)
            worker.close()
            return None, str(e)
        if not reply["ok"]:
            worker.close()
            return None, reply["error"]
        worker.version, worker.threads = reply["version"], reply["threads"]
        return worker, None

    def ask(self, **request):
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise RuntimeError(f"the torch worker exited (status {self.process.wait()}) on {request['cmd']!r}; "
                               "its stderr is above")
        return json.loads(line)

    def close(self):
        if self.process.poll() is None:
            with contextlib.suppress(RuntimeError):
                self.ask(cmd="quit")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        HELPER_PIDS.discard(self.process.pid)  # waited for: os.times counts it now
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


class TorchEpochs:
    """One torch variant in the worker, timed there one epoch per request."""

    framework = "torch"

    def __init__(self, worker, run_id):
        self.worker, self.run_id = worker, run_id

    def epoch(self):
        reply = self.worker.ask(cmd="epoch", run=self.run_id)
        if not reply["ok"]:
            raise RuntimeError(f"torch worker: {reply['error']}")
        return reply["seconds"]


def torch_runs(worker, rows, kit_net, notes, tmpdir):
    """[(label, TorchEpochs, times)] in float64 and float32 for the architecture of `rows`,
    which share them (torch has no conv methods), built in the worker from the kit's initial
    weights, or [] with a note saying why not."""
    first, name = rows[0], "/".join(rows[0].names)
    reason = None
    if getattr(getattr(kit_net, "augment_", None), "active", False):
        reason = "it augments its training images, which the torch loop here does not"
    else:
        params = {k: np.array(v, dtype=np.float64) for k, v in kit_net.GetParameters().items()}
        params_path = Path(tmpdir) / f"torch_init_{name.replace('/', '_')}.npz"
        np.savez(params_path, **params)
        reply = worker.ask(cmd="build", id=name, config=first.config, params=str(params_path),
                           check=FORWARD_CHECK_IMAGES)
        if not reply["ok"]:  # a layer type without a counterpart
            reason = reply["error"]
    if reason is not None:
        for row in rows:
            row.torch_note = "n/a"
        notes.append(f"torch: n/a for {name}: {reason}")
        return []
    check_torch_forward(kit_net, np.array(reply["probabilities"], dtype=np.float64), first, notes)
    for row in rows:
        row.torch64, row.torch32 = first.torch64, first.torch32
    return [(f"{name} torch float64", TorchEpochs(worker, reply["runs"]["float64"]), first.torch64),
            (f"{name} torch float32", TorchEpochs(worker, reply["runs"]["float32"]), first.torch32)]


def check_torch_forward(kit_net, torch_p, row, notes):
    """The torch model must compute the kit's function, or its times compare nothing.
    `torch_p`: its float64 softmax outputs on the first len(torch_p) validation images."""
    kit_p = kit_net.Fprop(kit_net.validation_[0][:len(torch_p)])[-1]
    diff = float(np.max(np.abs(kit_p - torch_p)))
    FORWARD_DIFFS.append(diff)
    if diff > 1e-10:  # float64 rounding differences are around 1e-16
        notes.append(f"WARNING: the torch model of {'/'.join(row.names)} differs from the kit's "
                     f"(max |probability difference| {diff:.1e} on {len(torch_p)} validation images)")
    return diff


if __name__ == "__main__":
    sys.exit(torch_worker())
