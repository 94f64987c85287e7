"""An exponential moving average of a network's parameters (Polyak averaging), for evaluation.

With the config key `weight_average: d` (0 < d < 1), after every training step each parameter
array w gets an average a <- d a + (1 - d) w, starting from the initial weights. Training
goes on with w; validation, the checkpoint and so evaluate.py use a. It is one network (the
same layers, one set of weights), whose weights are a smoothed version of the last
~1 / (1 - d) steps': the noise of the last steps of SGD averages out.

The averages are kept in float64 whatever the net's dtype: (1 - d) w is small against a,
and float32 would round much of it away.
"""

import numpy as np


class WeightAverage:
    """Averages of the arrays of a parameter dict ({'conv1_w': array, ...}, as
    NeuralNet.GetParameters returns it).

    params: the parameters to start from; decay: d, 0 < d < 1.
    """

    def __init__(self, params, decay):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be above 0 and below 1, got {decay!r}")
        self.decay_ = float(decay)
        self.averages_ = {name: np.array(value, dtype=np.float64) for name, value in params.items()}

    def update(self, params):
        """One step: every average a <- d a + (1 - d) w, w the array of the same name in `params`."""
        for name, value in params.items():
            average = self.averages_[name]
            average *= self.decay_
            # In float64: (1 - d) * a float32 array would be rounded to float32 first.
            average += (1.0 - self.decay_) * np.asarray(value, dtype=np.float64)

    def arrays(self):
        """{'<parameter>_average': average}, for the last state of a run."""
        return {name + "_average": average for name, average in self.averages_.items()}

    def restore(self, arrays):
        """Put back the averages `arrays` holds (as arrays() named them); ValueError naming the
        first one that is missing or of another shape."""
        for name, average in self.averages_.items():
            saved = arrays.get(name + "_average")
            if saved is None or np.shape(saved) != average.shape:
                raise ValueError(f"'{name}_average' is {'missing' if saved is None else np.shape(saved)}, "
                                 f"not {average.shape}")
        for name in self.averages_:
            self.averages_[name] = np.array(arrays[name + "_average"], dtype=np.float64)
