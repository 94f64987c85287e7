"""Learning-rate schedules: the factor every layer's configured epsilon is multiplied by in
an epoch (net-level key lr_schedule).

    constant  1 in every epoch (the default; the kit's behaviour before schedules)
    step      lr_step_factor ** ((epoch - 1) // lr_step_epochs): 1 for the first
              lr_step_epochs epochs, then lr_step_factor, then its square, ...
    cosine    lr_min_factor + (1 - lr_min_factor) * (1 + cos(pi * (epoch - 1) / num_epochs)) / 2:
              1 in epoch 1, falling along half a cosine towards lr_min_factor, which the
              epoch after the last would reach (as PyTorch's CosineAnnealingLR, T_max = num_epochs)
"""

import math

SCHEDULES = ("constant", "step", "cosine")


def lr_multiplier(epoch, num_epochs, schedule="constant", step_epochs=None, step_factor=0.1, min_factor=0.0):
    """The learning-rate factor of `epoch` (counted from 1) of a run of `num_epochs` epochs."""
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return float(step_factor) ** ((epoch - 1) // step_epochs)
    if schedule == "cosine":
        progress = min(epoch - 1, num_epochs) / num_epochs
        return min_factor + (1.0 - min_factor) * (1.0 + math.cos(math.pi * progress)) / 2.0
    raise ValueError(f"unknown learning-rate schedule {schedule!r}, not one of {', '.join(SCHEDULES)}")
