"""The network: a list of layers built from a YAML config, and the training loop.

`Fprop` runs the layers' ComputeUp bottom to top, `Bprop` their ComputeDown top to bottom,
and `Train` does mini-batch SGD with momentum, keeping the model with the best validation
accuracy. The config's keys and checks are in config.py; the files a run writes, checkpoints.py.
"""

import contextlib
import sys
import time

import numpy as np

from batchnorm_layer import BatchNormLayer
from conv_layer import ConvLayer
from data.augment import AugmentSettings, augment
from data.dataset import load_sets
from dropout_layer import DropoutLayer
from fc_layer import FCLayer
from maxpool_layer import MaxPoolLayer
from plumbing import checkpoints, run_files
from plumbing.config import load_config, read_config
from plumbing.display import ActivationDisplay
from plumbing.errors import ConfigError, TrainingDiverged
from plumbing.lr_schedule import lr_multiplier
from plumbing.settings import check_seed
from plumbing.shapes import check_layer_fits
from plumbing.weight_average import WeightAverage
from plumbing.writing import write_atomically

LAYER_TYPES = {"FC": FCLayer, "CONVOLUTIONAL": ConvLayer, "MAXPOOL": MaxPoolLayer, "DROPOUT": DropoutLayer,
               "BATCHNORM": BatchNormLayer}


class NeuralNet:
    """Layers built from a config, with forward/backward passes and momentum SGD.

    config: a dict as config.load_config returns, or the path of a YAML file.
    seed:   seeds the weights, the shuffling, the display, the augmentation and the dropout
            masks; the same seed gives the same run, bit for bit.
    """

    average_ = None  # a WeightAverage while Train runs with weight_average

    def __init__(self, config, seed=0):
        if not isinstance(config, dict):
            config = load_config(config)
        self.config_ = config
        self.source_ = config.get("_path", "config")
        # The settings (max_epochs, batch_size, ...: one frozen object) and the layers' entries, checked.
        self.settings_, protos = read_config(config, LAYER_TYPES, self.source_)
        settings = self.settings_
        self.augment_ = AugmentSettings(settings.augment_translate, settings.augment_rotate, settings.augment_scale,
                                        settings.augment_elastic_alpha, settings.augment_elastic_sigma)
        self.seed_ = check_seed(seed)
        init_seq, shuffle_seq, display_seq, augment_seq, dropout_seq = np.random.SeedSequence(seed).spawn(5)
        self.shuffle_rng_ = np.random.default_rng(shuffle_seq)
        self.display_rng_ = np.random.default_rng(display_seq)
        self.augment_rng_ = np.random.default_rng(augment_seq)
        self.dropout_rng_ = np.random.default_rng(dropout_seq)
        normed = [str(proto.get("name")) for proto in protos if proto.get("type") == "BATCHNORM"]
        if settings.weight_average and normed:
            # An average of weights does not match the running statistics of the trained ones.
            raise ConfigError(f"{self.source_}: key 'weight_average' cannot be used with a BATCHNORM layer "
                              f"('{normed[0]}'): set it to 0")
        self.layer_ = self._build_layers(protos, np.random.default_rng(init_seq))
        for layer in self.layer_:
            if isinstance(layer, DropoutLayer):
                layer.rng_ = self.dropout_rng_  # one stream for all of them, in layer order

    def _build_layers(self, protos, rng):
        layers = []
        for proto in protos:
            try:
                layers.append(LAYER_TYPES[proto["type"]](proto))
            except ConfigError as e:
                raise ConfigError(f"{self.source_}: {e}") from None
        layers[0].SetAsInput()
        layers[-1].SetAsOutput()
        if not isinstance(layers[-1], FCLayer):
            raise ConfigError(f"{self.source_}: the last layer ('{layers[-1].name_}') must be an FC "
                              "layer, one unit per class (its num_channels: the data set's number of classes)")
        channels, height, width = self.settings_.image_shape
        size = (height, width, channels)
        for layer in layers:
            # before it allocates
            check_layer_fits(layer, size, self.settings_.batch_size, self.settings_.dtype, self.source_)
            layer.dtype_ = np.dtype(self.settings_.dtype)
            try:
                size = layer.Initialize(*size, rng=rng)
            except ConfigError as e:
                raise ConfigError(f"{self.source_}: {e}") from None
        return layers

    # --- passes ---------------------------------------------------------------------------
    def Fprop(self, inputs):
        """inputs (batch, H*W*C) -> states [inputs in the net's dtype, outputs of layer 1, ..., predictions]."""
        states = [np.asarray(inputs, dtype=self.settings_.dtype)]
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
        the USPS file on first use; the last layer must have one unit per class of the file."""
        names = ["train", "validation"] + (["test"] if test else [])
        sets = load_sets(self.settings_.data_path, names, self.settings_.pixels, self.settings_.dtype, self.source_)
        classes, output = sets["train"][1].shape[1], self.layer_[-1]
        if output.num_channels_ != classes:
            raise ConfigError(f"{self.source_}: layer '{output.name_}': key 'num_channels' is {output.num_channels_}, "
                              f"but {self.settings_.data_path} has {classes} classes (one-hot labels of {classes}): "
                              f"the last layer needs one unit per class")
        self.train_, self.validation_, self.test_ = sets["train"], sets["validation"], sets.get("test")

    def Validate(self, dataset):
        """dataset: (data (N, pixels), one-hot labels (N, classes)) -> (mean cross entropy, accuracy)."""
        data, labels = dataset
        cross_entropy, correct = 0.0, 0
        for start in range(0, data.shape[0], self.settings_.batch_size):
            predictions = self.Fprop(data[start:start + self.settings_.batch_size])[-1]
            ce, c = self.ComputeLoss(predictions, labels[start:start + self.settings_.batch_size])
            cross_entropy += ce
            correct += c
        return cross_entropy / data.shape[0], correct / data.shape[0]

    # --- training -------------------------------------------------------------------------
    def Train(self, max_epochs=None, display=None, log=None, resume=False):
        """Mini-batch SGD with momentum for max_epochs (default: the config's); returns the best
        validation accuracy. Each epoch saves the stats, the checkpoint if validation improved,
        and the last state, from which resume=True goes on as if the run had not stopped.
        A NaN or infinity raises TrainingDiverged within the step it appears."""
        log = sys.stdout if log is None else log
        max_epochs = self.settings_.max_epochs if max_epochs is None else max_epochs
        display = self.settings_.display if display is None else display
        with run_files.claimed(self, display):  # outputs checked and locked before anything is trained or written
            if not hasattr(self, "train_"):
                self.LoadData()
            self.stats_, self.best_acc_, self.best_ce_, self.best_epoch_, self.epoch_ = [], -1.0, np.inf, 0, 0
            # The epoch each output holds on disk (0: none of this run's), so that a run that stops
            # says only what is true of its files.
            self.on_disk_ = {"stats": 0, "checkpoint": 0, "last_state": 0}
            self.run_ = checkpoints.run_fingerprint(self)
            decay = self.settings_.weight_average
            self.average_ = WeightAverage(self.GetParameters(), decay) if decay else None
            if resume:
                self._resume(max_epochs, log)
            self._epochs(max_epochs, display, log)
        rule = self.settings_.checkpoint_on
        best = (f"Best validation accuracy {self.best_acc_:.4f}" if rule == "accuracy" else
                f"Best validation cross entropy {self.best_ce_:.4f} (accuracy {self.best_acc_:.4f})"
                if rule == "cross_entropy" else
                f"Last validation cross entropy {self.best_ce_:.4f} (accuracy {self.best_acc_:.4f})")
        print(f"{best} (epoch {self.best_epoch_}); model saved in {self.settings_.checkpoint_file}", file=log,
              flush=True)
        return self.best_acc_

    def _epochs(self, max_epochs, display, log):
        """The epochs of Train after the last finished one, each saved as it ends."""
        train_x, train_t = self.train_
        num_train = train_x.shape[0]
        num_steps = -(-num_train // self.settings_.batch_size)  # every image, every epoch
        viewer = ActivationDisplay(self, log) if display else None
        interactive = log.isatty() if hasattr(log, "isatty") else False
        self.base_epsilon_ = {layer.name_: layer.epsilon_ for layer in self.layer_ if layer.has_params_}
        # Overflow is caught below, by epoch, step and layer: numpy's warnings would only add lines.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), self._training_extras():
            for epoch in range(self.epoch_ + 1, max_epochs + 1):
                start_time = time.perf_counter()
                lr_factor = self.epoch_lr_multiplier(epoch, max_epochs)
                self._set_learning_rates(lr_factor)
                order = self.shuffle_rng_.permutation(num_train)
                ce_sum, correct = 0.0, 0
                self._set_training(True)
                for step in range(num_steps):
                    batch = order[step * self.settings_.batch_size:(step + 1) * self.settings_.batch_size]
                    x, t = train_x[batch], train_t[batch]
                    if self.augment_.active:
                        x = augment(x, self.augment_rng_, self.augment_, self.settings_.image_shape)
                    states = self.Fprop(x)
                    ce, c = self.ComputeLoss(states[-1], t)
                    self._check_finite(epoch, step, ce, states)
                    ce_sum, correct = ce_sum + ce, correct + c
                    self.Update(self.Bprop(self.ComputeDeriv(states[-1], t), states))
                    self._check_parameters(epoch, step)
                    if self.average_:
                        self.average_.update(self.GetParameters())
                    if interactive:
                        print(f"\rEpoch {epoch} step {step + 1}/{num_steps}  CE {ce / len(batch):.4f}",
                              end="", file=log, flush=True)
                    if viewer:
                        viewer.after_step(step + 1, x, states)
                self._set_training(False)
                with self._evaluation_weights():
                    val_ce, val_acc = self.Validate(self.validation_)
                row = [ce_sum / num_train, correct / num_train, val_ce, val_acc, lr_factor]
                elapsed = time.perf_counter() - start_time
                self._end_epoch(epoch, row)  # saved first: an epoch line on screen is on disk
                print(("\r" if interactive else "") +
                      f"Epoch {epoch:3d}  {elapsed:6.2f}s  Train CE {row[0]:.4f} Acc {row[1]:.4f}  "
                      f"Val CE {row[2]:.4f} Acc {row[3]:.4f}"
                      + (f"  LR x{lr_factor:.4g}" if self.settings_.lr_schedule != "constant" else ""),
                      file=log, flush=True)
                if viewer:  # headless: the PNG, between epochs (display.py)
                    viewer.after_epoch(x, states, last=epoch == max_epochs)

    def _end_epoch(self, epoch, row):
        """Record an epoch's statistics: the stats file, the checkpoint if it improved, the last state."""
        self.stats_.append(row)
        write_atomically(self.settings_.performance_stats, lambda f: np.save(f, np.array(self.stats_)))
        self.on_disk_["stats"] = epoch
        val_ce, val_acc = row[2:4]
        rule = self.settings_.checkpoint_on
        # "last": every epoch's model replaces the one before.
        improved = (val_acc > self.best_acc_ if rule == "accuracy" else
                    val_ce < self.best_ce_ if rule == "cross_entropy" else True)
        if improved:
            with self._evaluation_weights():
                self.Save()  # the best so far only once it is on disk
            self.best_acc_, self.best_ce_, self.best_epoch_ = val_acc, val_ce, epoch
            self.on_disk_["checkpoint"] = epoch
        self.epoch_ = epoch
        checkpoints.save_last_state(self.LastStatePath(), self.layer_, self.stats_, self.epoch_, self.best_epoch_,
                                    self.seed_, self.best_acc_, self._rngs(), self.run_,
                                    self.average_.arrays() if self.average_ else None)
        self.on_disk_["last_state"] = epoch

    def epoch_lr_multiplier(self, epoch, num_epochs):
        """The factor of every layer's epsilon in `epoch` (from 1) of a `num_epochs` run."""
        return lr_multiplier(epoch, num_epochs, self.settings_.lr_schedule, self.settings_.lr_step_epochs,
                             self.settings_.lr_step_factor, self.settings_.lr_min_factor)

    def _set_learning_rates(self, factor):
        for layer in self.layer_:
            if layer.has_params_:
                layer.epsilon_ = self.base_epsilon_[layer.name_] * factor

    def _set_training(self, training):
        """Dropout drops units, and method 1 keeps its patches, only in training steps."""
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

    @contextlib.contextmanager
    def _evaluation_weights(self):
        """The weights validation and the checkpoint see: with weight_average, the averaged
        ones for the time of the block (training goes on with its own); else unchanged."""
        if not self.average_:
            yield
            return
        trained = {name: value.copy() for name, value in self.GetParameters().items()}
        for layer in self.layer_:
            layer.SetParameters(self.average_.averages_)
        try:
            yield
        finally:
            for layer in self.layer_:
                layer.SetParameters(trained)

    def _check_finite(self, epoch, step, ce, states):
        if not np.isfinite(ce):
            # The first layer whose outputs are not finite is where it went wrong.
            bad = [lyr for lyr, out in zip(self.layer_, states[1:]) if not np.all(np.isfinite(out))]
            self._diverged(epoch, step, bad[0] if bad else self.layer_[-1], updated=(epoch, step) != (1, 0))

    def _diverged(self, epoch, step, layer, updated=True):
        """Stop the run; `updated`: whether any update has been made yet (if not, the initial
        weights are to blame, not the learning rate)."""
        if updated:
            where, fix = f"training diverged at epoch {epoch}, step {step + 1}", "try a smaller 'epsilon'"
        else:
            where = "the first forward pass, before any update, overflowed"
            fix = f"the initial weights are too large: try a smaller 'init_wt' for layer '{layer.name_}' or below it"
        raise TrainingDiverged(
            f"{self.source_}: {where}: NaN or infinity in layer '{layer.name_}'; {fix} "
            f"(best checkpoint so far, if any, is unchanged: {self.settings_.checkpoint_file})")

    def _check_parameters(self, epoch, step):
        for layer in self.layer_:
            if layer.has_params_ and not (np.all(np.isfinite(layer.w_)) and np.all(np.isfinite(layer.b_))):
                self._diverged(epoch, step, layer)

    # --- resuming, saving, loading ---------------------------------------------------------
    def LastStatePath(self):
        """Where Train keeps what --resume needs: beside the checkpoint, '<name>_last.npz'."""
        return checkpoints.last_state_path(self.settings_.checkpoint_file)

    def _resume(self, max_epochs, log):
        """Go on from the last state (if it is this run's): parameters, momentum, statistics and generators."""
        state = checkpoints.resume_from(self.LastStatePath(), self.source_, self.layer_, self.seed_, self._rngs(),
                                        self.run_, lambda epoch: self.epoch_lr_multiplier(epoch, max_epochs))
        self.stats_, self.epoch_, self.best_epoch_ = state["stats"], state["epoch"], state["best_epoch"]
        self.best_acc_, self.best_ce_ = state["best_acc"], state["best_ce"]
        if self.average_:
            names = self.average_.arrays()
            saved = checkpoints.read_extra(self.LastStatePath(), self.source_,
                                           {name: array.shape for name, array in names.items()})
            self.average_.restore(saved)
        self.on_disk_ = {"stats": self.epoch_, "checkpoint": self.best_epoch_, "last_state": self.epoch_}
        print(f"Resuming after epoch {self.epoch_} (best validation accuracy so far "
              f"{self.best_acc_:.4f}, epoch {self.best_epoch_})", file=log, flush=True)

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
        checkpoints.save_arrays(path or self.settings_.checkpoint_file, self.GetParameters())

    def Load(self, path=None):
        """Read the parameters saved by Save."""
        path = path or self.settings_.checkpoint_file
        if path is None:
            raise ConfigError(f"{self.source_}: key 'checkpoint_file' is needed to load a model")
        params = checkpoints.load_checkpoint(path, self.source_, self.layer_)  # shapes checked
        for layer in self.layer_:
            layer.SetParameters(params)
