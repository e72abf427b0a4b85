"""Training system: TrainState, optimizer and schedule, EMA, sharded step, checkpoints, loop.

The names below are imported on first use, so `from train import config` (as config files
do) imports no JAX.
"""

from runtime import lazy

_EXPORTS = {
    "PREEMPTED_EXIT_CODE": "train.loop",
    "NonFiniteLossError": "train.loop",
    "WorkdirBusyError": "train.workdir_lock",
    "train_and_evaluate": "train.loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS)
