"""Training system: TrainState, optimizer and schedule, EMA, sharded step, checkpoints, loop."""
from train.loop import NonFiniteLossError, train_and_evaluate

__all__ = ["NonFiniteLossError", "train_and_evaluate"]
