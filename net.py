"""The network: a list of layers built from a YAML config, and the training loop.

A config names the data, the training settings and the layers, bottom to top:

    max_epochs: 25              batch_size: 100
    data_path: data/usps.npz    checkpoint_file: runs/logreg.npz
    performance_stats: runs/logreg_stats.npy
    input_image_size_y: 16      input_image_size_x: 16      input_num_channels: 1
    display: True               display_after: 20
    network:
      - {name: output, type: FC, num_channels: 10, init_wt: 0.05, epsilon: 0.02, momentum: 0.9, l2_decay: 0.0001}

Layer types: FC (fc_layer.py), CONVOLUTIONAL (conv_layer.py), MAXPOOL (maxpool_layer.py).
Relative paths are taken from the directory you run the scripts in (the kit's folder).
"""

import os
import sys
import tempfile
import time

import numpy as np
import yaml

from conv_layer import ConvLayer
from fc_layer import FCLayer
from layer import ConfigError
from maxpool_layer import MaxPoolLayer

LAYER_TYPES = {"FC": FCLayer, "CONVOLUTIONAL": ConvLayer, "MAXPOOL": MaxPoolLayer}

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
}


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
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys (max_epochs, network, ...)")
    config.setdefault("_path", str(path))
    return config


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place, so
    `path` always holds a whole file: the old one or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class NeuralNet:
    """Layers built from a config, with forward/backward passes and momentum SGD.

    config: a dict as load_config returns, or the path of a YAML file.
    seed:   seeds the weights, the shuffling and the display; the same seed gives the
            same run, bit for bit.
    """

    def __init__(self, config, seed=0):
        if not isinstance(config, dict):
            config = load_config(config)
        self.config_ = config
        self.source_ = config.get("_path", "config")
        for key, (kind, default) in SETTINGS.items():
            setattr(self, key + "_", self._setting(key, kind, default))
        for key in ("max_epochs", "batch_size", "input_image_size_y", "input_image_size_x",
                    "input_num_channels", "display_after"):
            if getattr(self, key + "_") < 1:
                raise ConfigError(f"{self.source_}: key '{key}' must be >= 1, got {getattr(self, key + '_')}")
        self.seed_ = seed
        init_seq, shuffle_seq, display_seq = np.random.SeedSequence(seed).spawn(3)
        self.shuffle_rng_ = np.random.default_rng(shuffle_seq)
        self.display_rng_ = np.random.default_rng(display_seq)
        self.layer_ = self._build_layers(np.random.default_rng(init_seq))

    def _setting(self, key, kind, default):
        value = self.config_.get(key, default)
        if value is None:
            return None
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{self.source_}: key '{key}' must be True or False, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{self.source_}: key '{key}' must be an integer, got {value!r}")
        elif not isinstance(value, str):
            raise ConfigError(f"{self.source_}: key '{key}' must be a string, got {value!r}")
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
                raise ConfigError(f"{self.source_}: network entry {i} has no 'name'")
            if name in names:
                raise ConfigError(f"{self.source_}: two layers are named '{name}'")
            names.add(name)
            kind = proto.get("type")
            if kind not in LAYER_TYPES:
                raise ConfigError(f"{self.source_}: layer '{name}' has unknown type {kind!r} "
                                  f"(known: {', '.join(LAYER_TYPES)})")
            layers.append(LAYER_TYPES[kind](proto))
        layers[0].SetAsInput()
        layers[-1].SetAsOutput()
        if not isinstance(layers[-1], FCLayer) or layers[-1].num_channels_ != 10:
            raise ConfigError(f"{self.source_}: the last layer ('{layers[-1].name_}') must be an FC "
                              "layer with num_channels 10, one unit per digit")
        size = (self.input_image_size_y_, self.input_image_size_x_, self.input_num_channels_)
        for layer in layers:
            size = layer.Initialize(*size, rng=rng)
        return layers

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
                raise ConfigError(f"{self.source_}: data_path {path} does not exist")
            usps.ensure(path)
        names = ["train", "validation"] + (["test"] if test else [])
        try:
            with np.load(path) as f:
                sets = {name: (f[name], f[name + "_labels"]) for name in names}
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"{self.source_}: data_path {path} is not a usable data file ({e})") from None
        size = self.input_image_size_y_ * self.input_image_size_x_ * self.input_num_channels_
        for name, (x, t) in sets.items():
            if x.ndim != 2 or x.shape[1] != size or t.shape != (x.shape[0], 10):
                raise ConfigError(f"{self.source_}: {name} in {path} has shape {x.shape}, the config's "
                                  f"input is {size} pixels per image")
        self.train_ = sets["train"]
        self.validation_ = sets["validation"]
        self.test_ = sets.get("test")

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
    def Train(self, max_epochs=None, display=None, log=None):
        """Train with mini-batch momentum SGD; save stats every epoch and the checkpoint on
        every improvement of validation accuracy. Returns the best validation accuracy."""
        log = sys.stdout if log is None else log
        max_epochs = self.max_epochs_ if max_epochs is None else max_epochs
        display = self.display_ if display is None else display
        for key in ("checkpoint_file", "performance_stats"):
            if getattr(self, key + "_") is None:
                raise ConfigError(f"{self.source_}: key '{key}' is needed to train")
        if not hasattr(self, "train_"):
            self.LoadData()
        train_x, train_t = self.train_
        num_train = train_x.shape[0]
        num_steps = -(-num_train // self.batch_size_)  # every image, every epoch
        viewer = ActivationDisplay(self, log) if display else None
        interactive = log.isatty() if hasattr(log, "isatty") else False
        stats, best_acc, best_epoch = [], -1.0, 0
        for epoch in range(1, max_epochs + 1):
            start_time = time.perf_counter()
            order = self.shuffle_rng_.permutation(num_train)
            ce_sum, correct = 0.0, 0
            for step in range(num_steps):
                batch = order[step * self.batch_size_:(step + 1) * self.batch_size_]
                x, t = train_x[batch], train_t[batch]
                states = self.Fprop(x)
                ce, c = self.ComputeLoss(states[-1], t)
                ce_sum += ce
                correct += c
                self.Update(self.Bprop(self.ComputeDeriv(states[-1], t), states))
                if interactive:
                    print(f"\rEpoch {epoch} step {step + 1}/{num_steps}  CE {ce / len(batch):.4f}",
                          end="", file=log, flush=True)
                if viewer and (step + 1) % self.display_after_ == 0:
                    viewer.show(x, states)
            val_ce, val_acc = self.Validate(self.validation_)
            row = [ce_sum / num_train, correct / num_train, val_ce, val_acc]
            stats.append(row)
            elapsed = time.perf_counter() - start_time
            print(("\r" if interactive else "") +
                  f"Epoch {epoch:3d}  {elapsed:6.2f}s  Train CE {row[0]:.4f} Acc {row[1]:.4f}  "
                  f"Val CE {row[2]:.4f} Acc {row[3]:.4f}", file=log, flush=True)
            write_atomically(self.performance_stats_, lambda f: np.save(f, np.array(stats)))
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
                self.Save()
        print(f"Best validation accuracy {best_acc:.4f} (epoch {best_epoch}); model saved in "
              f"{self.checkpoint_file_}", file=log, flush=True)
        return best_acc

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
        try:
            with np.load(path) as f:
                params = dict(f)
        except FileNotFoundError:
            raise ConfigError(f"{self.source_}: checkpoint {path} not found; train the model first "
                              f"(python train.py {self.source_})") from None
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.source_}: checkpoint {path} is not readable ({e})") from None
        for layer in self.layer_:
            layer.SetParameters(params)


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
