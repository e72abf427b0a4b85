"""Training system: TrainState, optimizer and schedule, EMA, sharded step, checkpoints, loop."""
from train.loop import PREEMPTED_EXIT_CODE, NonFiniteLossError, train_and_evaluate
from train.workdir_lock import WorkdirBusyError

__all__ = ["PREEMPTED_EXIT_CODE", "NonFiniteLossError", "WorkdirBusyError", "train_and_evaluate"]
