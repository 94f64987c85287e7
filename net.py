"""The network: a list of layers built from a YAML config, and the training loop.

A config names the data, the training settings and the layers, bottom to top:

    max_epochs: 25              batch_size: 100
    data_path: data/usps.npz    checkpoint_file: runs/logreg.npz
    performance_stats: runs/logreg_stats.npy
    input_image_size_y: 16      input_image_size_x: 16      input_num_channels: 1
    display: True               display_after: 20
    network:
      - {name: output, type: FC, num_channels: 10, init_wt: 0.05, epsilon: 0.02, momentum: 0.9, l2_decay: 0.0001}

Layer types: FC (fc_layer.py), CONVOLUTIONAL (conv_layer.py), MAXPOOL (maxpool_layer.py),
DROPOUT (dropout_layer.py). Optional training settings, all off by default: augment_translate,
augment_rotate, augment_scale (data/augment.py) and lr_schedule with its keys (lr_schedule.py).
Relative paths are taken from the directory you run the scripts in (the kit's folder).
"""

import contextlib
import ctypes
import json
import os
import sys
import tempfile
import time
import zipfile

import numpy as np
import yaml

from conv_layer import ConvLayer
from data.augment import AugmentSettings, augment
from dropout_layer import DropoutLayer
from fc_layer import FCLayer
from layer import ConfigError, check_keys, yaml_number
from lr_schedule import SCHEDULES, lr_multiplier
from maxpool_layer import MaxPoolLayer


def keep_freed_memory_for_reuse():
    """Ask the C library's malloc to keep freed memory for the next allocation.

    Every training step allocates and frees the same large arrays (patches, products,
    derivatives, a few MB each). By default glibc hands such blocks back to the system
    and the next step takes a page fault for every 4 KiB to get them again: a quarter of
    a convnet1 epoch and 40 % of a net_2layer epoch here (alternating runs of one epoch).
    Keeping them is simpler than having every layer manage buffers of its own. Blocks
    above 32 MB (the largest mmap threshold glibc takes) would still be mapped anew and
    zeroed by the system every step: method 2's five-axis products in convnet3 are 52 MB,
    and mapping them took about a quarter of its train.py epoch (README, Speed). So no
    block is mapped on its own (M_MMAP_MAX 0; glibc still maps when the heap cannot grow).
    True if the settings were taken (glibc); elsewhere (macOS, Windows, musl) it does
    nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, TypeError, AttributeError):
        return False
    # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD and M_MMAP_MAX of <malloc.h>
    trim_threshold, mmap_threshold, mmap_max = -1, -3, -4
    # Keep up to 512 MB of freed memory, and serve every block from it.
    return (bool(mallopt(trim_threshold, 512 << 20)) and bool(mallopt(mmap_threshold, 32 << 20))
            and bool(mallopt(mmap_max, 0)))


keep_freed_memory_for_reuse()

def with_lr_factor(stats):
    """Statistics with their 5th column, the learning-rate factor: a file written before
    schedules existed has 4 columns, and its factor was 1. Other shapes pass unchanged."""
    if stats.ndim == 2 and stats.shape[1] == 4:
        return np.hstack([stats, np.ones((len(stats), 1))])
    return stats


LAYER_TYPES = {"FC": FCLayer, "CONVOLUTIONAL": ConvLayer, "MAXPOOL": MaxPoolLayer, "DROPOUT": DropoutLayer}

# Top-level settings: (type, default). None means required when the setting is used.
SETTINGS = {
    "max_epochs": (int, 10),
    "batch_size": (int, 100),
    "data_path": (str, "data/usps.npz"),
    "checkpoint_file": (str, None),
    "performance_stats": (str, None),
    "input_image_size_y": (int, 16),
    "input_image_size_x": (int, 16),
    "input_num_channels": (int, 1),
    "display": (bool, False),
    "display_after": (int, 20),
    # Precision of weights, data and arithmetic: float32 halves memory traffic (faster);
    # grad_check.py always uses float64, whose rounding a numerical gradient needs.
    "dtype": (str, "float64"),
    # Which epoch the checkpoint keeps: the first with the highest validation accuracy (the
    # 2015 kit's rule), or the one with the lowest validation cross entropy, which still
    # tells epochs apart once the accuracy has stopped changing.
    "checkpoint_on": (str, "accuracy"),
    # Training extras, all off by default (README: "Training extras").
    "augment_translate": (float, 0.0),
    "augment_rotate": (float, 0.0),
    "augment_scale": (float, 0.0),
    "lr_schedule": (str, "constant"),
    "lr_step_epochs": (int, None),
    "lr_step_factor": (float, 0.1),
    "lr_min_factor": (float, 0.0),
}

# Allowed values beyond the type: (test, what the error says the value must be).
LIMITS = {
    "dtype": (lambda v: v in ("float64", "float32"), "float64 or float32"),
    "checkpoint_on": (lambda v: v in ("accuracy", "cross_entropy"), "accuracy or cross_entropy"),
    "augment_translate": (lambda v: v >= 0, ">= 0"),
    "augment_rotate": (lambda v: 0 <= v <= 180, "between 0 and 180"),
    "augment_scale": (lambda v: 0 <= v < 1, ">= 0 and below 1"),
    "lr_schedule": (lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
    "lr_step_epochs": (lambda v: v >= 1, ">= 1"),
    "lr_step_factor": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "lr_min_factor": (lambda v: 0 <= v <= 1, "between 0 and 1"),
}
# The keys of each learning-rate schedule: any other schedule's keys would be silently ignored.
SCHEDULE_KEYS = {"constant": (), "step": ("lr_step_epochs", "lr_step_factor"), "cosine": ("lr_min_factor",)}


def load_config(path):
    """Read a YAML config file into a dict, or raise ConfigError naming the file and the problem."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(e, yaml.constructor.ConstructorError):
            # safe_load builds plain data only: tags like !!python/object are refused.
            raise ConfigError(f"{path}: the YAML{where} asks to build a Python object "
                              f"({getattr(e, 'problem', '')}); configs hold plain values only") from None
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys (max_epochs, network, ...)")
    config.setdefault("_path", str(path))
    return config


class TrainingDiverged(RuntimeError):
    """A NaN or infinity appeared in the loss or the parameters."""


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place, so
    `path` always holds a whole file: the old one or the new one, never half of one,
    even if the process is killed or the machine loses power in between."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class NeuralNet:
    """Layers built from a config, with forward/backward passes and momentum SGD.

    config: a dict as load_config returns, or the path of a YAML file.
    seed:   seeds the weights, the shuffling, the display, the augmentation and the dropout
            masks; the same seed gives the same run, bit for bit.
    """

    def __init__(self, config, seed=0):
        if not isinstance(config, dict):
            config = load_config(config)
        self.config_ = config
        self.source_ = config.get("_path", "config")
        check_keys({k: v for k, v in config.items() if k != "_path"}, list(SETTINGS) + ["network"],
                   self.source_)
        for key, (kind, default) in SETTINGS.items():
            setattr(self, key + "_", self._setting(key, kind, default))
        for key in ("max_epochs", "batch_size", "input_image_size_y", "input_image_size_x",
                    "input_num_channels", "display_after"):
            if getattr(self, key + "_") < 1:
                raise ConfigError(f"{self.source_}: key '{key}' must be >= 1, got {getattr(self, key + '_')}")
        self._check_schedule_keys()
        self.augment_ = AugmentSettings(self.augment_translate_, self.augment_rotate_, self.augment_scale_)
        self.seed_ = seed
        # Children 4 and 5 are new; spawn(5) gives the same first three as the former spawn(3),
        # so runs without augmentation or dropout stay what they were.
        init_seq, shuffle_seq, display_seq, augment_seq, dropout_seq = np.random.SeedSequence(seed).spawn(5)
        self.shuffle_rng_ = np.random.default_rng(shuffle_seq)
        self.display_rng_ = np.random.default_rng(display_seq)
        self.augment_rng_ = np.random.default_rng(augment_seq)
        self.dropout_rng_ = np.random.default_rng(dropout_seq)
        self.layer_ = self._build_layers(np.random.default_rng(init_seq))
        for layer in self.layer_:
            if isinstance(layer, DropoutLayer):
                layer.rng_ = self.dropout_rng_  # one stream for all of them, in layer order

    def _check_schedule_keys(self):
        schedule = self.lr_schedule_
        for key in ("lr_step_epochs", "lr_step_factor", "lr_min_factor"):
            if key in self.config_ and key not in SCHEDULE_KEYS[schedule]:
                raise ConfigError(f"{self.source_}: key '{key}' has no effect with lr_schedule {schedule} "
                                  f"(it belongs to {'step' if key.startswith('lr_step') else 'cosine'})")
        if schedule == "step" and self.lr_step_epochs_ is None:
            raise ConfigError(f"{self.source_}: key 'lr_step_epochs' is needed with lr_schedule step "
                              "(decay every that many epochs)")

    def _setting(self, key, kind, default):
        value = given = self.config_.get(key, default)
        if value is None:
            return None
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{self.source_}: key '{key}' must be True or False, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{self.source_}: key '{key}' must be an integer, got {value!r}")
        elif kind is float:
            value = yaml_number(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ConfigError(f"{self.source_}: key '{key}' must be a finite number, got {given!r}")
            value = float(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{self.source_}: key '{key}' must be a string, got {value!r}")
        if key in LIMITS and not LIMITS[key][0](value):
            raise ConfigError(f"{self.source_}: key '{key}' must be {LIMITS[key][1]}, got {given!r}")
        return value

    def _build_layers(self, rng):
        protos = self.config_.get("network")
        if not isinstance(protos, list) or not protos:
            raise ConfigError(f"{self.source_}: key 'network' must be a non-empty list of layers")
        layers, names = [], set()
        for i, proto in enumerate(protos):
            if not isinstance(proto, dict):
                raise ConfigError(f"{self.source_}: network entry {i} must be a mapping of keys")
            name = proto.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{self.source_}: network entry {i}: missing key 'name'")
            if name in names:
                raise ConfigError(f"{self.source_}: layer '{name}': key 'name' is used by two layers")
            names.add(name)
            if "type" not in proto:
                raise ConfigError(f"{self.source_}: layer '{name}': missing key 'type' "
                                  f"(one of {', '.join(LAYER_TYPES)})")
            kind = proto["type"]
            if kind not in LAYER_TYPES:
                raise ConfigError(f"{self.source_}: layer '{name}': key 'type' is {kind!r}, "
                                  f"not one of {', '.join(LAYER_TYPES)}")
            try:
                layers.append(LAYER_TYPES[kind](proto))
            except ConfigError as e:
                raise ConfigError(f"{self.source_}: {e}") from None
        layers[0].SetAsInput()
        layers[-1].SetAsOutput()
        if not isinstance(layers[-1], FCLayer) or layers[-1].num_channels_ != 10:
            raise ConfigError(f"{self.source_}: the last layer ('{layers[-1].name_}') must be an FC "
                              "layer with num_channels 10, one unit per digit")
        size = (self.input_image_size_y_, self.input_image_size_x_, self.input_num_channels_)
        for layer in layers:
            if hasattr(layer, "kernel_size_"):
                self._check_window_fits(layer, size)
            layer.dtype_ = np.dtype(self.dtype_)
            try:
                size = layer.Initialize(*size, rng=rng)
            except ConfigError as e:
                raise ConfigError(f"{self.source_}: {e}") from None
        return layers

    def _check_window_fits(self, layer, size):
        """A window layer's output size (in + 2p - k) / s + 1 must be whole and at least 1:
        otherwise the last input rows would be silently ignored."""
        k, s, p = layer.kernel_size_, layer.stride_, layer.padding_
        for axis, n in zip("yx", size[:2]):
            span = n + 2 * p - k
            if span < 0 or span % s:
                raise ConfigError(f"{self.source_}: layer '{layer.name_}': key 'kernel_size'/'stride'/'padding': "
                                  f"output size ({n} + 2*{p} - {k}) / {s} + 1 along {axis} is "
                                  f"{span / s + 1:g}, not a whole number >= 1")

    # --- passes ---------------------------------------------------------------------------
    def Fprop(self, inputs):
        """inputs (batch, H*W*C) -> states [inputs, outputs of layer 1, ..., predictions]."""
        states = [inputs]
        for layer in self.layer_:
            states.append(layer.ComputeUp(states[-1]))
        return states

    def Bprop(self, deriv, states):
        """Backpropagate `deriv` (w.r.t. the softmax input) through the layers.

        returns: [(dw, db), ...], one pair per layer, bottom to top ((None, None) for pooling).
        """
        grads = [None] * len(self.layer_)
        for i in range(len(self.layer_) - 1, -1, -1):
            deriv, dw, db = self.layer_[i].ComputeDown(deriv, states[i + 1], states[i])
            grads[i] = (dw, db)
        return grads

    def Update(self, grads):
        for layer, (dw, db) in zip(self.layer_, grads):
            layer.Update(dw, db)

    @staticmethod
    def ComputeLoss(predictions, targets):
        """(summed cross entropy, number of correct predictions) of a batch."""
        tiny = np.finfo(predictions.dtype).tiny  # log(0) would be -inf
        cross_entropy = -np.sum(targets * np.log(np.maximum(predictions, tiny)))
        correct = np.sum(predictions.argmax(axis=1) == targets.argmax(axis=1))
        return float(cross_entropy), int(correct)

    @staticmethod
    def ComputeDeriv(predictions, targets):
        """Derivative of the cross entropy w.r.t. the input of the softmax."""
        return predictions - targets

    # --- data -----------------------------------------------------------------------------
    def LoadData(self, test=False):
        """Load the training and validation sets (and the test set if `test`), preparing
        the data file on first use."""
        from data import usps  # only here: grad_check needs no data

        path = self.data_path_
        if not os.path.exists(path):
            if os.path.basename(path) != "usps.npz":
                raise ConfigError(f"{self.source_}: key 'data_path': {path} does not exist "
                                  f"(python data/usps.py --out {path} makes the USPS file)")
            usps.ensure(path)
        names = ["train", "validation"] + (["test"] if test else [])
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [key for name in names for key in (name, name + "_labels") if key not in f.files]
                if missing:
                    raise ConfigError(f"{self.source_}: key 'data_path': {path} lacks the arrays "
                                      f"{', '.join(missing)} (python data/usps.py --out {path} rewrites it)")
                sets = {name: (f[name], f[name + "_labels"]) for name in names}
        except ConfigError:
            raise
        except Exception as e:  # not a zip, truncated, pickled: any of numpy's many errors
            raise ConfigError(f"{self.source_}: key 'data_path': {path} is not a readable .npz data file "
                              f"({type(e).__name__})") from None
        size = self.input_image_size_y_ * self.input_image_size_x_ * self.input_num_channels_
        for name, (x, t) in sets.items():
            if x.ndim != 2 or x.shape[1] != size:
                raise ConfigError(f"{self.source_}: key 'input_image_size_y'/'input_image_size_x'/"
                                  f"'input_num_channels': '{name}' in {path} has images of shape "
                                  f"{x.shape[1:]}, the config says {size} pixels per image")
            one_hot = t.ndim == 2 and t.shape[1] == 10 and np.all((t == 0) | (t == 1)) and np.all(t.sum(axis=1) == 1)
            if t.shape[0] != x.shape[0] or not one_hot:
                raise ConfigError(f"{self.source_}: key 'data_path': '{name}_labels' in {path} must be one-hot "
                                  f"rows of 10, one per image; got shape {t.shape} for {x.shape[0]} images")
            if not np.all(np.isfinite(x)):
                raise ConfigError(f"{self.source_}: key 'data_path': '{name}' in {path} holds NaN or infinity")
        dtype = np.dtype(self.dtype_)
        self.train_ = tuple(np.asarray(a, dtype=dtype) for a in sets["train"])
        self.validation_ = tuple(np.asarray(a, dtype=dtype) for a in sets["validation"])
        self.test_ = tuple(np.asarray(a, dtype=dtype) for a in sets["test"]) if test else None

    def Validate(self, dataset):
        """dataset: (data (N, pixels), one-hot labels (N, 10)) -> (mean cross entropy, accuracy)."""
        data, labels = dataset
        cross_entropy, correct = 0.0, 0
        for start in range(0, data.shape[0], self.batch_size_):
            predictions = self.Fprop(data[start:start + self.batch_size_])[-1]
            ce, c = self.ComputeLoss(predictions, labels[start:start + self.batch_size_])
            cross_entropy += ce
            correct += c
        return cross_entropy / data.shape[0], correct / data.shape[0]

    # --- training -------------------------------------------------------------------------
    def LastStatePath(self):
        """Where Train keeps what --resume needs: beside the checkpoint, '<name>_last.npz'."""
        return os.path.splitext(self.checkpoint_file_)[0] + "_last.npz"

    def Train(self, max_epochs=None, display=None, log=None, resume=False):
        """Train with mini-batch momentum SGD; save stats every epoch and the checkpoint on
        every improvement of validation accuracy. Returns the best validation accuracy.

        Every epoch also saves the last state (parameters, momentum, statistics, random
        generators), so that resume=True continues an interrupted run exactly as if it had
        not stopped. A NaN or infinity raises TrainingDiverged within the step it appears.

        Each epoch's learning rates are the layers' epsilons times the schedule's factor for
        that epoch (a cosine schedule spans max_epochs: this argument when given, as
        train.py --epochs gives it, else the config's). Training images are augmented when
        the config says so; dropout layers drop units only during the training steps.
        """
        log = sys.stdout if log is None else log
        max_epochs = self.max_epochs_ if max_epochs is None else max_epochs
        display = self.display_ if display is None else display
        for key in ("checkpoint_file", "performance_stats"):
            if getattr(self, key + "_") is None:
                raise ConfigError(f"{self.source_}: key '{key}' is needed to train")
        if not hasattr(self, "train_"):
            self.LoadData()
        self.stats_, self.best_acc_, self.best_epoch_, self.epoch_ = [], -1.0, 0, 0
        self.best_ce_ = np.inf
        if resume:
            self._load_last_state()
            self._check_resumed_schedule(max_epochs)
            print(f"Resuming after epoch {self.epoch_} (best validation accuracy so far "
                  f"{self.best_acc_:.4f}, epoch {self.best_epoch_})", file=log, flush=True)
        train_x, train_t = self.train_
        num_train = train_x.shape[0]
        num_steps = -(-num_train // self.batch_size_)  # every image, every epoch
        viewer = ActivationDisplay(self, log) if display else None
        interactive = log.isatty() if hasattr(log, "isatty") else False
        # Overflow is caught below, by name of epoch, step and layer: numpy's own warnings
        # would only add lines.
        image_shape = (self.input_num_channels_, self.input_image_size_y_, self.input_image_size_x_)
        # The learning rates as set now (the config's): a schedule scales these, epoch by epoch.
        self.base_epsilon_ = {layer.name_: layer.epsilon_ for layer in self.layer_ if layer.has_params_}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), self._training_extras():
            for epoch in range(self.epoch_ + 1, max_epochs + 1):
                start_time = time.perf_counter()
                lr_factor = self.epoch_lr_multiplier(epoch, max_epochs)
                self._set_learning_rates(lr_factor)
                order = self.shuffle_rng_.permutation(num_train)
                ce_sum, correct = 0.0, 0
                self._set_training(True)
                for step in range(num_steps):
                    batch = order[step * self.batch_size_:(step + 1) * self.batch_size_]
                    x, t = train_x[batch], train_t[batch]
                    if self.augment_.active:
                        x = augment(x, self.augment_rng_, self.augment_, image_shape)
                    states = self.Fprop(x)
                    ce, c = self.ComputeLoss(states[-1], t)
                    if not np.isfinite(ce):
                        self._diverged(epoch, step, states=states)
                    ce_sum += ce
                    correct += c
                    self.Update(self.Bprop(self.ComputeDeriv(states[-1], t), states))
                    self._check_parameters(epoch, step)
                    if interactive:
                        print(f"\rEpoch {epoch} step {step + 1}/{num_steps}  CE {ce / len(batch):.4f}",
                              end="", file=log, flush=True)
                    if viewer and (step + 1) % self.display_after_ == 0:
                        viewer.show(x, states)
                self._set_training(False)
                val_ce, val_acc = self.Validate(self.validation_)
                row = [ce_sum / num_train, correct / num_train, val_ce, val_acc, lr_factor]
                self.stats_.append(row)
                elapsed = time.perf_counter() - start_time
                # Save first, then report: an epoch line on screen means that epoch is on disk.
                stats = np.array(self.stats_)
                write_atomically(self.performance_stats_, lambda f: np.save(f, stats))
                if self.checkpoint_on_ == "accuracy":
                    improved = val_acc > self.best_acc_
                else:
                    improved = val_ce < self.best_ce_
                if improved:
                    self.best_acc_, self.best_ce_, self.best_epoch_ = val_acc, val_ce, epoch
                    self.Save()
                self.epoch_ = epoch
                self._save_last_state()
                print(("\r" if interactive else "") +
                      f"Epoch {epoch:3d}  {elapsed:6.2f}s  Train CE {row[0]:.4f} Acc {row[1]:.4f}  "
                      f"Val CE {row[2]:.4f} Acc {row[3]:.4f}"
                      + (f"  LR x{lr_factor:.4g}" if self.lr_schedule_ != "constant" else ""),
                      file=log, flush=True)
        best = (f"Best validation accuracy {self.best_acc_:.4f}" if self.checkpoint_on_ == "accuracy" else
                f"Best validation cross entropy {self.best_ce_:.4f} (accuracy {self.best_acc_:.4f})")
        print(f"{best} (epoch {self.best_epoch_}); model saved in "
              f"{self.checkpoint_file_}", file=log, flush=True)
        return self.best_acc_

    def epoch_lr_multiplier(self, epoch, num_epochs):
        """The factor of every layer's epsilon in `epoch` (from 1) of a `num_epochs` run."""
        return lr_multiplier(epoch, num_epochs, self.lr_schedule_, self.lr_step_epochs_,
                             self.lr_step_factor_, self.lr_min_factor_)

    def _set_learning_rates(self, factor):
        for layer in self.layer_:
            if layer.has_params_:
                layer.epsilon_ = self.base_epsilon_[layer.name_] * factor

    def _set_training(self, training):
        """Dropout layers drop units only in training steps, never in Validate or a grad check."""
        for layer in self.layer_:
            layer.training_ = training

    @contextlib.contextmanager
    def _training_extras(self):
        """However Train ends (done, diverged, interrupted), the layers are left as they were:
        evaluation mode and the epsilons Train started with."""
        try:
            yield
        finally:
            self._set_training(False)
            self._set_learning_rates(1.0)

    def _check_resumed_schedule(self, max_epochs):
        """The finished epochs' learning-rate factors must be this run's: a resume with another
        schedule (or another --epochs under cosine) would not be the interrupted run."""
        done = [row[4] for row in self.stats_]
        planned = [self.epoch_lr_multiplier(epoch, max_epochs) for epoch in range(1, len(done) + 1)]
        if not np.allclose(done, planned, rtol=1e-12, atol=0):
            raise ConfigError(f"{self.source_}: cannot resume: the finished epochs used learning-rate factors "
                              f"{', '.join(f'{v:.4g}' for v in done)}, this config and epoch count give "
                              f"{', '.join(f'{v:.4g}' for v in planned)} (resume with the same lr_schedule "
                              f"keys and --epochs)")

    def _diverged(self, epoch, step, states=None, layer=None):
        if layer is None:
            # The first layer whose outputs are not finite is where it went wrong.
            bad = [lyr for lyr, out in zip(self.layer_, states[1:]) if not np.all(np.isfinite(out))]
            layer = bad[0] if bad else self.layer_[-1]
        raise TrainingDiverged(
            f"{self.source_}: training diverged at epoch {epoch}, step {step + 1}: NaN or infinity in layer "
            f"'{layer.name_}'; try a smaller 'epsilon' (best checkpoint so far, if any, is unchanged: "
            f"{self.checkpoint_file_})")

    def _check_parameters(self, epoch, step):
        for layer in self.layer_:
            if layer.has_params_ and not (np.all(np.isfinite(layer.w_)) and np.all(np.isfinite(layer.b_))):
                self._diverged(epoch, step, layer=layer)

    def _save_last_state(self):
        arrays = dict(self.GetParameters())
        for layer in self.layer_:
            if layer.has_params_:
                arrays[f"{layer.name_}_w_velocity"] = layer.dw_history_
                arrays[f"{layer.name_}_b_velocity"] = layer.db_history_
        arrays["stats"] = np.array(self.stats_, dtype=np.float64).reshape(-1, 5)
        arrays["progress"] = np.array([self.epoch_, self.best_epoch_, self.seed_], dtype=np.int64)
        arrays["best_acc"] = np.array(self.best_acc_)
        arrays["rng_states"] = np.array(json.dumps([rng.bit_generator.state for rng in self._rngs()]))
        write_atomically(self.LastStatePath(), lambda f: np.savez(f, **arrays))

    def _load_last_state(self):
        path = self.LastStatePath()
        if not os.path.exists(path):
            raise ConfigError(f"{self.source_}: nothing to resume: {path} not found "
                              f"(it is written after each epoch; run without --resume to start)")
        try:
            with np.load(path, allow_pickle=False) as f:
                state = dict(f)
            epoch, best_epoch, seed = (int(v) for v in state["progress"])
            rng_states = json.loads(str(state["rng_states"]))
        except Exception as e:  # truncated or foreign file
            raise ConfigError(f"{self.source_}: cannot resume from {path}: not a last-state file "
                              f"({type(e).__name__}: {e})") from None
        if seed != self.seed_:
            raise ConfigError(f"{self.source_}: {path} was trained with --seed {seed}, not {self.seed_}")
        for layer in self.layer_:
            layer.SetParameters(state)
            if layer.has_params_:
                for attr, key in (("dw_history_", "_w_velocity"), ("db_history_", "_b_velocity")):
                    velocity = state.get(layer.name_ + key)
                    if velocity is None or velocity.shape != getattr(layer, attr).shape:
                        raise ConfigError(f"{self.source_}: {path} does not match layer '{layer.name_}'")
                    setattr(layer, attr, np.array(velocity, dtype=layer.w_.dtype))
        # A file from before augmentation and dropout holds two states; the other generators
        # were not used then, so they stay as seeded.
        for rng, rng_state in zip(self._rngs(), rng_states):
            rng.bit_generator.state = rng_state
        stats = with_lr_factor(state["stats"])
        if stats.ndim != 2 or stats.shape != (epoch, 5):
            raise ConfigError(f"{self.source_}: cannot resume from {path}: its statistics have shape "
                              f"{stats.shape}, not ({epoch}, 5)")
        self.stats_ = [list(row) for row in stats]
        self.epoch_, self.best_epoch_, self.best_acc_ = epoch, best_epoch, float(state["best_acc"])
        self.best_ce_ = float(self.stats_[best_epoch - 1][2]) if 1 <= best_epoch <= epoch else np.inf

    def _rngs(self):
        """The generators a resumed run must continue, in the order the last state keeps them."""
        return [self.shuffle_rng_, self.display_rng_, self.augment_rng_, self.dropout_rng_]

    def GetParameters(self):
        params = {}
        for layer in self.layer_:
            params.update(layer.GetParameters())
        return params

    def Save(self, path=None):
        """Write every layer's parameters, by name, to an .npz checkpoint (atomically)."""
        params = self.GetParameters()
        write_atomically(path or self.checkpoint_file_, lambda f: np.savez(f, **params))

    def Load(self, path=None):
        """Read the parameters saved by Save."""
        path = path or self.checkpoint_file_
        if path is None:
            raise ConfigError(f"{self.source_}: key 'checkpoint_file' is needed to load a model")
        if not os.path.exists(path):
            raise ConfigError(f"{self.source_}: checkpoint {path} not found; train the model first "
                              f"(python train.py {self.source_})")
        try:
            with np.load(path, allow_pickle=False) as f:
                params = dict(f)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise ConfigError(f"{self.source_}: checkpoint {path} is damaged or not a checkpoint "
                              f"({type(e).__name__}: {e}); train again (python train.py {self.source_})") from None
        except Exception as e:  # zlib and other decoding errors of a truncated file
            raise ConfigError(f"{self.source_}: checkpoint {path} is damaged ({type(e).__name__}: {e}); "
                              f"train again (python train.py {self.source_})") from None
        for layer in self.layer_:
            try:
                layer.SetParameters(params)
            except ConfigError as e:
                raise ConfigError(f"{self.source_}: checkpoint {path}: {e}") from None


class ActivationDisplay:
    """One row of panels: an input image and each layer's activations for it.

    Shown in a window when matplotlib has one; otherwise (a headless machine) written to
    a PNG next to the stats file, which the first call says once.
    """

    def __init__(self, net, log):
        import matplotlib
        import matplotlib.pyplot as plt

        self.net_, self.log_, self.plt_ = net, log, plt
        self.headless_ = matplotlib.get_backend().lower() in {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
        base = os.path.splitext(net.performance_stats_)[0]
        self.png_ = (base[:-len("_stats")] if base.endswith("_stats") else base) + "_display.png"
        self.figure_ = None

    @staticmethod
    def _tile(activation):
        """(C, H, W) maps -> one mosaic image; a vector -> a near-square image; an image stays."""
        a = np.asarray(activation, dtype=float)
        if a.ndim == 2:
            return a
        if a.ndim == 1:
            side = int(np.ceil(np.sqrt(a.size)))
            return np.pad(a, (0, side * side - a.size), constant_values=np.nan).reshape(side, side)
        c, h, w = a.shape
        cols = int(np.ceil(np.sqrt(c)))
        rows = -(-c // cols)
        mosaic = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
        for i in range(c):
            r, q = divmod(i, cols)
            mosaic[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = a[i]
        return mosaic

    def show(self, batch, states):
        net, plt = self.net_, self.plt_
        i = int(net.display_rng_.integers(batch.shape[0]))
        image = batch[i].reshape(net.input_num_channels_, net.input_image_size_y_, net.input_image_size_x_)
        panels = [("input", self._tile(image[0] if image.shape[0] == 1 else image))]
        for layer, state in zip(net.layer_[:-1], states[1:-1]):
            panels.append((layer.name_, self._tile(state[i])))
        if self.figure_ is None:
            if not self.headless_:
                plt.ion()
            self.figure_, axes = plt.subplots(1, len(panels) + 1, figsize=(2.2 * (len(panels) + 1), 2.6))
            self.axes_ = axes
        for ax in self.axes_:
            ax.clear()
            ax.set_xticks([])
            ax.set_yticks([])
        for ax, (title, img) in zip(self.axes_, panels):
            ax.imshow(img, cmap="gray", interpolation="nearest")
            ax.set_title(title, fontsize=9)
        probs = states[-1][i]
        self.axes_[-1].bar(range(10), probs)
        self.axes_[-1].set_ylim(0, 1)
        self.axes_[-1].set_xticks(range(10))
        self.axes_[-1].set_title(f"output: {int(np.argmax(probs))}", fontsize=9)
        if self.headless_:
            write_atomically(self.png_, lambda f: self.figure_.savefig(f, format="png", dpi=72))
            if not getattr(self, "said_", False):
                print(f"display: no screen here; the activations figure is written to {self.png_}",
                      file=self.log_, flush=True)
                self.said_ = True
        else:
            plt.pause(0.001)
