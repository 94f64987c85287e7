"""How fast is the kit? One run, printed as Markdown the README can quote:
python tools/bench.py [--quick] [--repeat N] [--only NAME[,NAME]] [--no-torch] [--threads N]
                      [--total] [--data NPZ]

The kit is measured in this process and PyTorch in a child process that this one asks for
one epoch at a time (torch never loads here: its OpenMP runtime would be the one the kit's
compiled kernels share, and on a small machine it makes them several times slower); sections
5 and 6 run train.py in child processes. One measurement after another on the same machine,
and every time is a median.

1. Seconds per epoch for every training config in configs/ (a config is a training config
   when it names its data and epochs: it has both `data_path` and `max_epochs`; this leaves
   out the grad-check configs and lenet.yaml), each conv config by method 1 and by method 2
   (the conv layers' `convolve_method` rewritten in memory), in float64 (`dtype` rewritten
   when a config sets it) and, for convnet1 and any config that ships with `dtype: float32`,
   in float32 ("n/a" if the kit refuses the key). An epoch is what NeuralNet.Train times:
   the training images in a new random order, in mini-batches, each step (augmentation if
   the config asks for it) Fprop, ComputeLoss, the divergence checks, ComputeDeriv, Bprop and
   Update, dropout on; then Validate on the validation set. The loop below runs those calls
   of the kit's own NeuralNet (seed 0) as Train does (tests/test_bench.py checks that it
   ends where Train's epoch ends, bit for bit), without Train's file writes and display, so
   nothing is written anywhere (Train itself would save a checkpoint every epoch). One
   warm-up epoch per variant, then --repeat timed epochs (default 3) taken round-robin over
   the variants of one architecture, so that a change in the machine's load hits them all
   alike; the table gives the median.
2. The same architectures in PyTorch, when it is importable (it is never a dependency of
   the kit): Conv2d/MaxPool2d/Linear/Dropout built from the YAML, ReLU after every layer but
   the last, softmax cross entropy, SGD with the config's per-layer momentum, learning rate
   (epsilon) and L2 decay (weights only, as the kit), the kit's initial weights, the same
   batch size and the same epoch (shuffled mini-batches, then a no-grad validation pass),
   in float64 and float32, with torch.set_num_threads(usable cores) (--threads N: N). It
   runs in a child process (`bench.py --torch-worker`, JSON lines on its stdin and stdout)
   that loads the same data file (and --quick subset), builds the models from the config
   and the kit's initial weights (an .npz in the temporary folder) and, blocked on its stdin
   in between, runs one epoch when asked and answers with its seconds. Timed round-robin
   with the kit's variants of the same architecture: per round this process times each kit
   variant itself, then asks for each torch variant in turn. Before timing, the torch
   float64 model's softmax outputs on 100 validation images (sent back by the child) are
   compared with the kit's (the table's note gives the largest difference; above 1e-10 is
   a warning), and
   tests/test_bench.py checks that both take the same SGD steps. A config that augments its
   images gets "n/a" here: this loop has no augmentation.
3. convolutions.convolve on exactly the calls method 2 makes in convnet1 and convnet2
   (forward, input derivative except for the input layer, weight derivative), recorded by
   wrapping convolve while the kit's method 2 layers do one training step on 100 training
   images in float64 (so nothing here restates the handout's answer, and it follows the
   layers as they change), timed again on the same arrays against two independent
   references of the same padded 'valid' true convolution: scipy.signal.convolve2d looped
   over the broadcast leading axes, and scipy.signal.fftconvolve over axes (-2, -1). All
   three must agree (np.allclose). Each is called for a quarter of a second (at least
   --repeat calls, at most 500; --quick: --repeat calls) and the median taken: a call of a
   third of a millisecond varies with when a sleeping thread wakes.
4. Achieved GFLOP/s of convnet1 epochs: multiply-adds counted per layer from the config
   (conv forward N*K*C*k*k*H'*W', its input and weight derivatives as much again each, no
   input derivative in the first layer; FC forward N*in*out and the same for each
   derivative; pooling and activations not counted), 2 flops each, over the training set
   forward and backward and the validation set forward, divided by the epoch times of
   section 1; against numpy.dot of two 1024x1024 matrices (2 * 1024**3 / median time).
5. Peak resident memory of `python train.py <convnet1_method1 copy> --epochs 2 --no-display`
   (the child's ru_maxrss from os.wait4, in a small go-between process: see run_child), and
   for scale that of a Python that only imports the kit.
6. Only with --total (it takes minutes): wall time and peak memory of each Part 1 and Part 2
   training of the handout (logreg, net_1layer, net_2layer, convnet1_method1,
   convnet1_method2, convnet2) at its configured max_epochs, one `python train.py` child
   after another, and their sum.

Child processes run train.py in the kit's folder on copies of the configs whose checkpoint
and stats files point into a temporary folder: runs/ is never touched.

--quick is a smoke test: 500 training and 200 validation images, one warm-up and one timed
epoch, batch 10 for section 3, and the subset for the child trainings (1 epoch each with
--total). Its numbers are not the benchmark. --only picks configs by name (sections 3 to 6
cover the models among them). Threads: without --threads the kit runs as train.py runs it,
OpenBLAS's and the kernels' OpenMP threads at their defaults (one per core), and torch gets torch.set_num_threads(usable
cores), its fastest setting here, in the environment the bench was started with (without
the variables the bench itself set). --threads N sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS
and MKL_NUM_THREADS to N before numpy is loaded (for every child too) and torch's thread
count to N. OMP_WAIT_POLICY=PASSIVE is set unless already set, as the kit's conv_layer.py
does, before the kernels load. The header line names the machine, the libraries, the
thread counts as the libraries report them, the thread variables set (and which of them
the bench set), the date, the kit's git revision and the load; the epoch table and the last
line say how busy other processes kept the CPUs meanwhile.
--data uses another prepared USPS file instead of each config's data_path.

Results go to stdout as Markdown; progress goes to stderr.
Exit status: 0, or 2 for a bad command line.
"""

import os
import sys


def _threads_from_argv(argv):
    """The value of --threads N / --threads=N if it is a positive integer, else None. The
    real parser checks it later; this early look exists because BLAS reads its thread count
    from the environment once, when numpy loads it."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if value.isdigit() and int(value) >= 1:
            return value
    return None


WORKER_FLAG = "--torch-worker"  # the hidden mode of the child that runs the torch side
# The thread variables the bench set itself because they were unset, and why: the kit's
# environment as train.py and the layers make it. The torch worker starts without them.
BENCH_DEFAULTS = {}
DEFAULT_REASONS = {"OMP_WAIT_POLICY": "as conv_layer.py", "OPENBLAS_THREAD_TIMEOUT": "as train.py"}


def set_thread_environment(threads):
    """Thread variables for this process (read once, when numpy and the kernels load) and
    for its children: --threads N for every library, else the kit's defaults."""
    if threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    # What the kit's conv_layer.py does before it imports `convolutions`; kernel_threads()
    # below imports it first, so the bench must do the same (OpenMP reads it as it loads).
    defaults = {"OMP_WAIT_POLICY": "PASSIVE"}
    if threads is None:
        defaults["OPENBLAS_THREAD_TIMEOUT"] = "4"  # what train.py sets before numpy loads
    for var, value in defaults.items():
        if var not in os.environ:
            os.environ[var] = value
            BENCH_DEFAULTS[var] = value


if __name__ == "__main__" and sys.argv[1:2] != [WORKER_FLAG]:
    set_thread_environment(_threads_from_argv(sys.argv[1:]))

import contextlib  # noqa: E402
import copy  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

KIT = Path(__file__).resolve().parents[1]
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from tools.cli import OneLineParser  # noqa: E402

CONFIG_DIR = KIT / "configs"
# The handout's order; any other training config found in configs/ comes after, by name.
HANDOUT_ORDER = ("logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2",
                 "convnet2", "convnet3")
PART_1_AND_2 = ("logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2", "convnet2")
FLOAT32_CONFIGS = ("convnet1_method1", "convnet1_method2")
# Sections 3 to 5: the model, and the configs (either selects it) that hold it.
CONVOLVE_MODELS = {"convnet1": ("convnet1_method1", "convnet1_method2"), "convnet2": ("convnet2",)}
GFLOPS_MODEL = "convnet1"
MEMORY_CONFIG = "convnet1_method1"
QUICK_TRAIN, QUICK_VALIDATION, QUICK_CONVOLVE_BATCH = 500, 200, 10
CONVOLVE_BATCH = 100
MATMUL_SIZE = 1024


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# configs, shapes and flops (plain Python: no kit code, so the count is independent of it)
# ----------------------------------------------------------------------------------------

def training_configs():
    """{name: config dict} of every training config in configs/, in the handout's order."""
    found = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        with open(path) as f:
            config = yaml.safe_load(f)
        if isinstance(config, dict) and "data_path" in config and "max_epochs" in config:
            found[path.stem] = config
    order = [n for n in HANDOUT_ORDER if n in found] + sorted(n for n in found if n not in HANDOUT_ORDER)
    return {name: found[name] for name in order}


def _window(layer):
    k = int(layer["kernel_size"])
    default_stride = k if layer["type"] == "MAXPOOL" else 1
    return k, int(layer.get("stride", default_stride)), int(layer.get("padding", 0))


def layer_shapes(config):
    """[(layer, (C, H, W) in, (C, H, W) out)] for the config's network, bottom to top."""
    shape = (int(config.get("input_num_channels", 1)), int(config.get("input_image_size_y", 16)),
             int(config.get("input_image_size_x", 16)))
    result = []
    for layer in config["network"]:
        c, h, w = shape
        if layer["type"] == "FC":
            out = (int(layer["num_channels"]), 1, 1)
        elif layer["type"] not in ("CONVOLUTIONAL", "MAXPOOL"):
            out = shape  # DROPOUT and the like keep their input's shape
        else:
            k, s, p = _window(layer)
            channels = int(layer["num_channels"]) if layer["type"] == "CONVOLUTIONAL" else c
            out = (channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        result.append((layer, shape, out))
        shape = out
    return result


def flops_per_image(config):
    """(forward, backward) flops of one image: 2 per multiply-add of the conv and FC layers.

    Forward, a conv layer does K*C*k*k multiply-adds per output pixel and an FC layer in*out.
    Backward, the weight derivative costs as much again, and so does the input derivative,
    which the bottom layer does not compute. Pooling and activations are not counted.
    """
    forward = backward = 0
    for i, (layer, (c, h_in, w_in), (k_out, h_out, w_out)) in enumerate(layer_shapes(config)):
        if layer["type"] == "CONVOLUTIONAL":
            k = int(layer["kernel_size"])
            macs = k_out * c * k * k * h_out * w_out
        elif layer["type"] == "FC":
            macs = c * h_in * w_in * k_out
        else:
            continue
        forward += 2 * macs
        backward += 2 * macs * (1 if i == 0 else 2)
    return forward, backward


def epoch_flops(config, num_train, num_validation):
    """Flops of one epoch: forward and backward over the training set, forward over validation."""
    forward, backward = flops_per_image(config)
    return num_train * (forward + backward) + num_validation * forward


def with_method(config, method):
    """A deep copy of the config with every conv layer's convolve_method set to `method`."""
    config = copy.deepcopy(config)
    for layer in config["network"]:
        if layer["type"] == "CONVOLUTIONAL":
            layer["convolve_method"] = method
    return config


def has_conv(config):
    return any(layer["type"] == "CONVOLUTIONAL" for layer in config["network"])


def network_key(config, with_methods=True):
    """What decides the computation: equal keys mean the same network, trained the same way."""
    keys = ("batch_size", "input_image_size_y", "input_image_size_x", "input_num_channels", "dtype")
    network = config["network"] if with_methods else with_method(config, "method1")["network"]
    return json.dumps([{k: config.get(k) for k in keys}, network], sort_keys=True)


# ----------------------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def openblas_threads():
    """(threads, description) of the OpenBLAS numpy loaded, asked from the library itself:
    the environment variables only say what was requested."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    name = f"{blas.get('name', 'BLAS')} {blas.get('version', '')}".strip()
    # numpy's own copy first: scipy may load another OpenBLAS that the kit's matmuls never use.
    for path in sorted(loaded_libraries("openblas"), key=lambda p: "numpy" not in p):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                       "scipy_openblas_get_num_threads", "openblas_get_num_threads"):
            getter = getattr(lib, symbol, None)
            if getter is not None:
                return int(getter()), name
    requested = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return (int(requested) if requested and requested.isdigit() else usable_cores()), name


def loaded_libraries(*words):
    """Paths of the shared libraries this process has mapped whose names hold one of `words`."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[5] for line in f if len(line.split()) >= 6}
    except OSError:
        return []
    return sorted(p for p in paths if any(w in os.path.basename(p).lower() for w in words))


def kernel_threads():
    """How the compiled kernels (convolutions) run: single-threaded, or OpenMP with how many
    threads. Call it after set_thread_environment (OMP_WAIT_POLICY is read as this loads)."""
    import convolutions  # noqa: F401

    for path in loaded_libraries("libgomp", "libomp", "libiomp"):
        try:
            return f"OpenMP, {int(ctypes.CDLL(path).omp_get_max_threads())} threads"
        except (OSError, AttributeError):
            return "OpenMP"
    return "single-threaded"


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", str(KIT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        # --no-optional-locks: only look; never refresh the index of a tree others work in.
        changed = subprocess.run(["git", "--no-optional-locks", "-C", str(KIT), "status", "--porcelain",
                                  "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not rev:
        return "unknown"
    return rev + (" with uncommitted changes" if changed.strip() else "")


HELPER_PIDS = set()  # live child processes of the bench itself (the torch worker): not "others"


def process_cpu(pid):
    """User + system seconds of a live process, from /proc/<pid>/stat (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class CpuShare:
    """How much CPU other processes (and the hypervisor, as steal) took while a part of the
    benchmark ran: on a shared machine that is what makes its times noisy. The bench's own
    children count as its own: waited-for ones by os.times, the live torch worker by /proc."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                values = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait is busy.
        busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        helpers = sum(process_cpu(pid) for pid in HELPER_PIDS)
        return busy, t.user + t.system + t.children_user + t.children_system + helpers, time.perf_counter()

    def others(self):
        """Cores kept busy by others on average since this object was made, or None."""
        end = self._snapshot()
        if self.start is None or end is None or end[2] - self.start[2] < 0.5:
            return None
        busy, own, wall = (b - a for a, b in zip(self.start, end))
        return max(busy - own, 0.0) / wall

    def sentence(self, what):
        share = self.others()
        if share is None:
            return ""
        return (f"While {what} ran, other processes kept {share:.2f} of the {os.cpu_count()} cores busy "
                f"on average (/proc/stat).")


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                    "GOMP_SPINCOUNT", "OMP_PROC_BIND", "MKL_NUM_THREADS")


def thread_settings():
    """The environment variables that change how the libraries use threads, as set (those
    the bench set itself say so)."""
    found = [f"{v}={os.environ[v]}" + (f" (set by the bench, {DEFAULT_REASONS[v]})" if v in BENCH_DEFAULTS else "")
             for v in THREAD_VARIABLES if v in os.environ]
    return ", ".join(found) if found else "no thread variables set"


def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------------------------
# the kit's training epoch
# ----------------------------------------------------------------------------------------

def load_arrays(path):
    """train and validation (images, one-hot labels) from a prepared USPS file."""
    with np.load(path, allow_pickle=False) as f:
        return {name: (f[name], f[name + "_labels"]) for name in ("train", "validation")}


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
        num_train, batch_size = train_x.shape[0], net.batch_size_
        check = getattr(net, "_check_parameters", None)  # Train's per-step divergence check
        set_training = getattr(net, "_set_training", None)  # dropout on in the steps only
        augment, settings = None, getattr(net, "augment_", None)
        if settings is not None and settings.active:
            import net as kit_net  # the function Train calls on each training batch

            augment = kit_net.augment
            image_shape = (net.input_num_channels_, net.input_image_size_y_, net.input_image_size_x_)
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


# ----------------------------------------------------------------------------------------
# the same network in PyTorch (in the child process: see TorchWorker)
# ----------------------------------------------------------------------------------------

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
            k, s, p = _window(layer)
            modules.append(nn.MaxPool2d(k, stride=s, padding=p))
            continue
        if kind == "CONVOLUTIONAL":
            k, s, p = _window(layer)
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
        self.torch, self.F = torch, torch.nn.functional
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
        torch, F, model, optimizer = self.torch, self.F, self.model, self.optimizer
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
            loss = F.cross_entropy(logits, y)  # mean over the batch, as the kit's derivatives
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
                val_ce += F.cross_entropy(logits, y, reduction="sum").item()
                val_correct += int((logits.argmax(dim=1) == y).sum())
        return time.perf_counter() - start


def torch_worker(requests=None, answers=None):
    """The torch side, run as `python tools/bench.py --torch-worker`: one JSON request a line
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
    def start(cls, threads, data_path, limit):
        """(worker or None, reason torch is missing)."""
        # The environment the bench was started with: the kit's defaults are not torch's.
        env = {k: v for k, v in os.environ.items() if k not in BENCH_DEFAULTS}
        try:
            process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), WORKER_FLAG], cwd=KIT,
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
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


# ----------------------------------------------------------------------------------------
# section 1 and 2: epochs
# ----------------------------------------------------------------------------------------

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
    """convnet1 is also timed in float32, and so is a config that ships with dtype float32."""
    return any(name in FLOAT32_CONFIGS for name in row.names) or row.config.get("dtype") == "float32"


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
                except ValueError as e:  # ConfigError: the kit does not take the key (yet)
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


FORWARD_CHECK_IMAGES = 100


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


FORWARD_DIFFS = []  # max |kit - torch| softmax output of each architecture, for the table's note


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


# ----------------------------------------------------------------------------------------
# section 3: convolve
# ----------------------------------------------------------------------------------------

def record_method2_calls(name, config, arrays, batch):
    """[(layer, call, inputs, weights, padding)]: every convolutions.convolve call that one
    training step (Fprop, then Bprop) of the kit's network by method 2 makes, in float64, on
    `batch` real training images, recorded as the layers make them. The arrays are kept as
    passed (views and all), so the timing sees the layouts the layers give convolve. Raises
    NotImplementedError in a student kit whose method 2 is still blank."""
    import conv_layer
    import convolutions
    from net import NeuralNet

    config = with_method(config, "method2")
    if "dtype" in config:
        config["dtype"] = "float64"
    with contextlib.redirect_stdout(io.StringIO()):
        net = NeuralNet(dict(config, _path=f"configs/{name}.yaml (benchmark copy)"), seed=0)
    calls, where = [], {"layer": None}
    real = convolutions.convolve

    def spy(inputs, weights, padding=0):
        result = real(inputs, weights, padding=padding)
        layer, phase = where["layer"], where["phase"]
        call = phase
        if phase == "backward":
            k = layer.kernel_size_
            call = "weight derivative" if tuple(result.shape[-2:]) == (k, k) else "input derivative"
        calls.append((layer.name_, call, inputs, weights, padding))
        return result

    def labelled(layer, phase, method):
        def run(*args):
            where.update(layer=layer, phase=phase)
            return method(*args)
        return run

    for layer in net.layer_:
        if isinstance(layer, conv_layer.ConvLayer):
            # Instance attributes: only this network's layers say who is calling.
            layer.ComputeUp = labelled(layer, "forward", layer.ComputeUp)
            layer.ComputeDown = labelled(layer, "backward", layer.ComputeDown)
    x, t = arrays["train"][0][:batch], arrays["train"][1][:batch]
    convolutions.convolve = spy
    try:
        states = net.Fprop(x)
        net.Bprop(net.ComputeDeriv(states[-1], t), states)
    finally:
        convolutions.convolve = real
    return calls


def pad_last_two(a, p):
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(p, p), (p, p)]) if p else a


def convolve2d_loop(inputs, weights, padding):
    """The reference: scipy's direct 2-D convolution, one image and kernel at a time."""
    from scipy.signal import convolve2d

    padded = pad_last_two(inputs, padding)
    lead = np.broadcast_shapes(padded.shape[:-2], weights.shape[:-2])
    a = np.broadcast_to(padded, lead + padded.shape[-2:])
    b = np.broadcast_to(weights, lead + weights.shape[-2:])
    result = np.empty(lead + (a.shape[-2] - b.shape[-2] + 1, a.shape[-1] - b.shape[-1] + 1))
    for index in np.ndindex(*lead):
        result[index] = convolve2d(a[index], b[index], mode="valid")
    return result


def fftconvolve_all(inputs, weights, padding):
    from scipy.signal import fftconvolve

    return fftconvolve(pad_last_two(inputs, padding), weights, mode="valid", axes=(-2, -1))


# convolve's shortest calls take a third of a millisecond, and one of three wakes a
# sleeping thread late: each function is called until CONVOLVE_SECONDS have passed (at least
# `repeat` calls, at most CONVOLVE_MAX_CALLS), the kit's and the references' alike.
CONVOLVE_SECONDS, CONVOLVE_MAX_CALLS = 0.25, 500


def timed(function, repeat, *args, seconds=0.0, max_calls=None):
    """(median seconds over `repeat` calls, or as many more as fit in `seconds` up to
    `max_calls`; the last result)."""
    times = []
    began = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - began < seconds and len(times) < max_calls):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure_convolve(models, configs, arrays, batch, repeat, seconds, notes):
    import convolutions

    # Import and first-call costs of scipy are not the references' speed.
    small = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    convolve2d_loop(*small, 1), fftconvolve_all(*small, 1)
    rows, totals = [], [0.0, 0.0, 0.0]
    all_equal = True
    budget = dict(seconds=seconds, max_calls=CONVOLVE_MAX_CALLS)
    for model, name in models:
        try:
            calls = record_method2_calls(name, configs[name], arrays, batch)
        except NotImplementedError as e:
            notes.append(f"{model}: method 2 is not implemented here ({e})")
            continue
        if not calls:
            notes.append(f"{model}: method 2 made no calls to convolutions.convolve")
        for layer, call, inputs, weights, padding in calls:
            log(f"convolve: {model} {layer} {call}")
            convolutions.convolve(inputs, weights, padding)  # warm-up: page in the output
            t_kit, result = timed(convolutions.convolve, repeat, inputs, weights, padding, **budget)
            t_loop, ref_loop = timed(convolve2d_loop, repeat, inputs, weights, padding, **budget)
            t_fft, ref_fft = timed(fftconvolve_all, repeat, inputs, weights, padding, **budget)
            equal = (result.shape == ref_loop.shape == ref_fft.shape and np.allclose(result, ref_loop)
                     and np.allclose(result, ref_fft))
            all_equal &= equal
            for i, t in enumerate((t_kit, t_loop, t_fft)):
                totals[i] += t
            shapes = (f"{fmt_shape(inputs.shape)} * {fmt_shape(weights.shape)} pad {padding} "
                      f"-> {fmt_shape(result.shape)}")
            rows.append([model, layer, call, shapes, ms(t_kit), ms(t_loop), ratio(t_loop, t_kit),
                         ms(t_fft), ratio(t_fft, t_kit), "yes" if equal else "**NO**"])
    if rows:
        rows.append(["total", "", "", "", ms(totals[0]), ms(totals[1]), ratio(totals[1], totals[0]),
                     ms(totals[2]), ratio(totals[2], totals[0]), "yes" if all_equal else "**NO**"])
    return rows


# ----------------------------------------------------------------------------------------
# section 4: matmul rate
# ----------------------------------------------------------------------------------------

def matmul_gflops(dtype, repeat=7):
    """This machine's numpy.dot rate for MATMUL_SIZE-square matrices, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE)).astype(dtype)
    b = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE)).astype(dtype)
    np.dot(a, b)  # warm-up: BLAS starts its threads
    t, _ = timed(np.dot, repeat, a, b)
    return 2 * MATMUL_SIZE ** 3 / t / 1e9


# ----------------------------------------------------------------------------------------
# sections 5 and 6: child processes
# ----------------------------------------------------------------------------------------

def write_training_copy(name, tmpdir, data_path=None):
    """A copy of configs/<name>.yaml that writes its checkpoint and stats into tmpdir."""
    with open(CONFIG_DIR / f"{name}.yaml") as f:
        config = yaml.safe_load(f)
    folder = Path(tmpdir) / name
    folder.mkdir(parents=True, exist_ok=True)
    config.update(checkpoint_file=str(folder / f"{name}.npz"),
                  performance_stats=str(folder / f"{name}_stats.npy"), display=False)
    if data_path is not None:
        config["data_path"] = str(data_path)
    path = folder / f"{name}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


# Starts the measured child and reports its wall time and ru_maxrss. Why a go-between: Linux
# carries a process's peak RSS across exec, so a child forked straight from this process
# (hundreds of MB by now) would report at least this process's size. Forked from this small
# interpreter instead, the child's own peak is what is left.
_REAPER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{elapsed} {usage.ru_maxrss}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_child(args, tmpdir):
    """Run `python args...` in the kit's folder: (wall seconds, exit status, peak RSS in MB,
    output)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    report = Path(tmpdir) / "child_usage.txt"
    report.unlink(missing_ok=True)
    with tempfile.TemporaryFile(dir=tmpdir) as out:
        # -I -S: the go-between imports nothing it does not need, so it stays small.
        status = subprocess.run([sys.executable, "-I", "-S", "-c", _REAPER, str(report), sys.executable]
                                + [str(a) for a in args], cwd=KIT, env=env, stdout=out,
                                stderr=subprocess.STDOUT).returncode
        out.seek(0)
        output = out.read().decode(errors="replace")
    try:
        elapsed, maxrss = report.read_text().split()
    except (OSError, ValueError):
        return float("nan"), status or 1, float("nan"), output
    # Linux gives ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return float(elapsed), status, int(maxrss) * scale / 2 ** 20, output


def failure(status, output):
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return f"failed (exit {status}: {last})".replace("|", "\\|")  # a bare | would split the table cell


# ----------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------

def markdown_table(headings, rows, numeric_from=1):
    lines = ["| " + " | ".join(headings) + " |",
             "| " + " | ".join("---:" if i >= numeric_from else "---" for i in range(len(headings))) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(times, note=""):
    if not times:
        return note or "–"
    return f"{statistics.median(times):.3g}"


def ms(t):
    return f"{t * 1e3:.3g}"


def ratio(a, b):
    if not b:
        return "–"
    r = a / b
    return f"{r:.3g}"


def fmt_shape(shape):
    return "(" + ",".join(str(n) for n in shape) + ")"


def median_ratio(a, b):
    return ratio(statistics.median(a), statistics.median(b)) if a and b else "–"


def spread(times):
    return max(times) / min(times) - 1 if len(times) > 1 else 0.0


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------

def parse_args(argv, names):
    parser = OneLineParser(prog="bench.py", allow_abbrev=False,  # --threads is read before parsing
                           description="Benchmark the kit (and PyTorch, if importable); Markdown on stdout.")
    parser.add_argument("--quick", action="store_true", help="smoke test: a small subset, 1 timed epoch")
    parser.add_argument("--repeat", type=int,
                        help="timed epochs per variant, median taken (default 3; 1 with --quick)")
    parser.add_argument("--only", help="comma-separated config names (default: all: " + ", ".join(names) + ")")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch columns")
    parser.add_argument("--threads", type=int,
                        help="BLAS, OpenMP and torch threads (default: one per core for each, as train.py)")
    parser.add_argument("--total", action="store_true",
                        help="also time the full Part 1 and Part 2 trainings (minutes)")
    parser.add_argument("--data", help="prepared USPS .npz to use instead of each config's data_path")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.only is not None:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in args.only if n not in names]
        if not args.only or unknown:
            parser.error(f"--only: no training config {', '.join(unknown) or repr('')}; "
                         f"choose from {', '.join(names)}")
    if args.data is not None and not os.path.isfile(args.data):
        parser.error(f"--data: {args.data} is not a file")
    return args


def out(text=""):
    print(text, flush=True)


@dataclass
class Setup:
    """What every section needs."""
    args: object
    configs: dict        # every training config, by name
    selected: dict       # those --only picked
    torch: object        # the TorchWorker, or None
    data_path: Path
    arrays: dict
    limit: tuple         # (training, validation) images with --quick, else None
    tmpdir: str

    @property
    def num_train(self):
        n = len(self.arrays["train"][0])
        return min(n, self.limit[0]) if self.limit else n

    @property
    def num_validation(self):
        n = len(self.arrays["validation"][0])
        return min(n, self.limit[1]) if self.limit else n

    def child_data(self):
        """The data file of the child trainings: the --quick subset, --data, or the configs' own."""
        if self.args.quick:
            return write_subset(self.arrays, self.tmpdir)
        return self.args.data


def section_epochs(setup, missing):
    """Sections 1 and 2; returns the rows for section 4."""
    args, torch = setup.args, setup.torch
    groups = plan_rows(setup.selected)
    cpu = CpuShare()
    notes = measure_epochs(groups, args, torch, setup.data_path, setup.limit, setup.tmpdir)
    # The point of the torch worker: tests/test_bench.py reads this line.
    torch_here = "torch" in sys.modules
    log(f"torch imported in the process that timed the kit: {'YES' if torch_here else 'no'}")
    if torch_here:
        notes.insert(0, "WARNING: torch was imported in the process that timed the kit; its OpenMP "
                        "runtime slows the kit's kernels, so the kit's times are not trustworthy")
    rows = [row for group in groups.values() for row in group]
    out(f"### Seconds per epoch ({setup.num_train} training images in mini-batches, then validation on "
        f"{setup.num_validation}; median of {args.repeat} after 1 warm-up)")
    out()
    with_float32 = [wants_float32(row) for row in rows]
    headings = ["config", "conv method", "kit float64"] + (["kit float32"] if any(with_float32) else [])
    if torch is not None:
        headings += ["torch float64", "torch float32", "kit / torch float64"]
    table = []
    for row, float32 in zip(rows, with_float32):
        cells = [", ".join(row.names), row.method or "–", seconds(row.kit)]
        if any(with_float32):
            cells.append(seconds(row.kit32, row.kit32_note) if float32 else "–")
        if torch is not None:
            cells += [seconds(row.torch64, row.torch_note), seconds(row.torch32, row.torch_note),
                      median_ratio(row.kit, row.torch64)]
        table.append(cells)
    out(markdown_table(headings, table, numeric_from=2))
    out()
    paragraph = ["The kit's time is its own training loop (NeuralNet's Fprop, ComputeLoss, ComputeDeriv, "
                 "Bprop, Update and checks per mini-batch, then Validate), without Train's file writes."]
    cells = [(f"{', '.join(r.names)} {r.method}".strip(), what, t) for r in rows
             for what, t in (("kit float64", r.kit), ("kit float32", r.kit32),
                             ("torch float64", r.torch64), ("torch float32", r.torch32)) if len(t) > 1]
    if cells:
        worst = max(cells, key=lambda item: spread(item[2]))
        paragraph.append(f"Largest spread of one cell's timed epochs (slowest / fastest - 1): "
                         f"{spread(worst[2]):.0%} ({worst[0]}, {worst[1]}).")
    paragraph.append(cpu.sentence("the epochs"))
    if torch is not None:
        paragraph.append(
            "PyTorch runs in a child process, asked for one epoch at a time. "
            "It does not depend on the conv method: one measurement per architecture, shown on both "
            "method rows. Each torch model starts from the kit's initial weights; in float64 its softmax "
            "outputs on 100 validation images differ from the kit's by at most "
            f"{max(FORWARD_DIFFS, default=float('nan')):.1e}.")
    else:
        paragraph.append(f"PyTorch columns left out: {missing}.")
    out(" ".join(p for p in paragraph if p))
    out()
    for note in dict.fromkeys(notes):
        out(f"- {note}.")
    if notes:
        out()
    return rows


def section_convolve(setup):
    models = [(model, names[0] if names[0] in setup.selected else names[-1])
              for model, names in CONVOLVE_MODELS.items() if any(n in setup.selected for n in names)]
    if not models:
        return
    repeat = setup.args.repeat
    batch = QUICK_CONVOLVE_BATCH if setup.args.quick else CONVOLVE_BATCH
    notes = []
    seconds = 0.0 if setup.args.quick else CONVOLVE_SECONDS
    table = measure_convolve(models, setup.configs, setup.arrays, batch, repeat, seconds, notes)
    calls = (f"median of the calls made in {seconds:g} s, at least {repeat}, at most {CONVOLVE_MAX_CALLS}"
             if seconds else f"median of {repeat}")
    out(f"### `convolutions.convolve` on method 2's calls (batch {batch}, float64; ms, {calls})")
    out()
    if table:
        out(markdown_table(["model", "layer", "call", "inputs * kernels -> output", "convolve",
                            "convolve2d loop", "ratio", "fftconvolve", "ratio", "equal"], table, numeric_from=4))
        out()
        out("The calls are those the kit's method 2 layers make in one training step (forward and "
            f"backward) on {batch} training images, recorded as made and timed again with the same "
            "arrays. References: `scipy.signal.convolve2d(mode='valid')` on the zero-padded image, "
            "looped over the broadcast leading axes, and `scipy.signal.fftconvolve(mode='valid', "
            "axes=(-2, -1))` on it; ratio = reference time / convolve time; equal = `np.allclose` with "
            "both. What the layers do around each call (sums over an axis, flips) is not included.")
        out()
    for note in notes:
        out(f"- {note}.")
    if notes:
        out()


def section_gflops(setup, rows):
    rows = [row for row in rows if row.method and any(n.startswith(GFLOPS_MODEL) for n in row.names)]
    if not rows:
        return
    peak64, peak32 = matmul_gflops(np.float64), matmul_gflops(np.float32)
    config = rows[0].config
    flops = epoch_flops(config, setup.num_train, setup.num_validation)
    forward, backward = flops_per_image(config)
    runs = [(f"{what}, {row.method}", times, peak) for row in rows
            for what, times, peak in (("kit float64", row.kit, peak64), ("kit float32", row.kit32, peak32))]
    runs += [("torch float64", rows[0].torch64, peak64), ("torch float32", rows[0].torch32, peak32)]
    table = []
    for what, times, peak in runs:
        if times:
            rate = flops / statistics.median(times) / 1e9
            table.append([what, seconds(times), f"{rate:.3g}", f"{rate / peak:.1%}"])
    out(f"### Achieved GFLOP/s of a {GFLOPS_MODEL} epoch")
    out()
    out(markdown_table(["run", "s / epoch", "GFLOP/s", "of numpy.dot's rate"], table))
    out()
    out(f"{flops / 1e9:.3g} GFLOP per epoch: {forward / 1e6:.3g} MFLOP forward and {backward / 1e6:.3g} "
        f"MFLOP backward per image, over {setup.num_train} training images, plus {setup.num_validation} "
        "validation images forward (2 flops per multiply-add of the conv and FC layers; pooling and "
        f"activations not counted). numpy.dot of two {MATMUL_SIZE}x{MATMUL_SIZE} matrices here: "
        f"{peak64:.3g} GFLOP/s in float64, {peak32:.3g} in float32 (median of 7).")
    out()


def section_memory(setup):
    if not any(n in setup.selected for n in CONVOLVE_MODELS[GFLOPS_MODEL]):
        return
    log(f"peak memory: python train.py {MEMORY_CONFIG} --epochs 2")
    config_copy = write_training_copy(MEMORY_CONFIG, setup.tmpdir, setup.child_data())
    _, status, peak, output = run_child(["train.py", config_copy, "--epochs", "2", "--no-display"], setup.tmpdir)
    _, base_status, base, _ = run_child(["-c", "import net, train"], setup.tmpdir)
    out("### Peak resident memory")
    out()
    command = f"`python train.py configs/{MEMORY_CONFIG}.yaml --epochs 2 --no-display`"
    if status == 0:
        baseline = f"{base:.0f} MB" if base_status == 0 else "n/a"
        out(f"{command} (checkpoint and stats redirected to a temporary folder"
            f"{'; on the --quick subset' if setup.args.quick else ''}): **{peak:.0f} MB** peak resident "
            f"(ru_maxrss); a Python that only imports the kit: {baseline}.")
    else:
        out(f"{command}: {failure(status, output)}")
    out()


def section_total(setup):
    quick = setup.args.quick
    table, total = [], 0.0
    for name in (n for n in PART_1_AND_2 if n in setup.selected):
        config_copy = write_training_copy(name, setup.tmpdir, setup.child_data())
        epochs = 1 if quick else setup.configs[name]["max_epochs"]
        log(f"total: python train.py {name} ({epochs} epochs)")
        elapsed, status, peak, output = run_child(
            ["train.py", config_copy, "--no-display"] + (["--epochs", "1"] if quick else []), setup.tmpdir)
        total += elapsed
        table.append([name, epochs, f"{elapsed:.1f}" if status == 0 else failure(status, output), f"{peak:.0f}"])
    if not table:
        return
    table.append(["total", "", f"**{total:.1f}**", ""])
    out("### Part 1 and Part 2 trainings, one after another")
    out()
    out(markdown_table(["config", "epochs", "wall s", "peak MB"], table))
    out()
    out("Each is `python train.py <config copy> --no-display` at the config's max_epochs"
        f"{' (--quick: 1 epoch on the subset)' if quick else ''}; wall time includes starting Python "
        "and loading the data.")
    out()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER_FLAG]:
        return torch_worker()
    configs = training_configs()
    args = parse_args(argv, list(configs))
    started, cpu = time.perf_counter(), CpuShare()
    # Run as a script, this was done before numpy loaded; here it reaches the children (and,
    # imported, the kernels, which kernel_threads loads).
    set_thread_environment(args.threads)
    selected = {n: c for n, c in configs.items() if args.only is None or n in args.only}
    threads, blas = openblas_threads()
    kernels = kernel_threads()
    limit = (QUICK_TRAIN, QUICK_VALIDATION) if args.quick else None

    # One data file for every measurement: --data, else the path the configs name.
    data_path = Path(args.data).resolve() if args.data else KIT / next(iter(selected.values()))["data_path"]
    if not data_path.exists():
        from data import usps  # fetch and prepare it once, as train.py would

        usps.ensure(str(data_path))
    arrays = load_arrays(data_path)
    if args.no_torch:
        worker, missing = None, "--no-torch"
    else:
        log("starting the torch worker")
        worker, missing = TorchWorker.start(args.threads or usable_cores(), data_path, limit)
    try:
        return _report(argv, args, configs, selected, started, cpu, threads, blas, kernels, worker, missing,
                       data_path, arrays, limit)
    finally:
        if worker is not None:
            worker.close()


def _report(argv, args, configs, selected, started, cpu, threads, blas, kernels, worker, missing, data_path,
            arrays, limit):
    title = "## Benchmark" + (" (--quick: a smoke test, not the benchmark)" if args.quick else "")
    torch_text = (f"torch {worker.version} in a child process ({worker.threads} threads: "
                  f"{'--threads' if args.threads else 'one per usable core'})" if worker is not None
                  else f"torch not used ({missing})")
    thread_source = ("--threads" if args.threads else "OPENBLAS_NUM_THREADS"
                     if os.environ.get("OPENBLAS_NUM_THREADS") else "OpenBLAS default")
    out(title)
    out()
    out(f"Machine: {cpu_model()}, {os.cpu_count()} cores ({usable_cores()} usable); Python "
        f"{platform.python_version()}, numpy {np.__version__} on {blas} ({threads} BLAS threads: "
        f"{thread_source}; the kit's compiled kernels: {kernels}; {thread_settings()}); {torch_text}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; kit {git_revision()}; load average "
        f"{load_average()} at the start. Command: `{' '.join(['python tools/bench.py'] + argv)}`.")
    out()
    with tempfile.TemporaryDirectory(prefix="kit_bench_") as tmpdir:
        setup = Setup(args, configs, selected, worker, data_path, arrays, limit, tmpdir)
        rows = section_epochs(setup, missing)
        if worker is not None:
            worker.close()  # done: its memory and threads are not part of sections 3 to 6
        section_convolve(setup)
        section_gflops(setup, rows)
        section_memory(setup)
        if args.total:
            section_total(setup)
    out(" ".join(filter(None, [f"Benchmark run time {time.perf_counter() - started:.0f} s; load average "
                               f"{load_average()} at the end.", cpu.sentence("the whole benchmark")])))
    return 0


def write_subset(arrays, tmpdir):
    """The --quick subset as a data file, for the child trainings (written once)."""
    path = Path(tmpdir) / "subset.npz"
    if not path.exists():
        subset = {}
        for name, n in (("train", QUICK_TRAIN), ("validation", QUICK_VALIDATION)):
            subset[name], subset[name + "_labels"] = (a[:n] for a in arrays[name])
        # A data file has all three sets; evaluate.py would read the test set.
        subset["test"], subset["test_labels"] = (a[:QUICK_VALIDATION] for a in arrays["validation"])
        np.savez(path, **subset)
    return path


if __name__ == "__main__":
    sys.exit(main())
