"""Training one config: `train(config, callbacks) -> result` (loop.py) over the step (step.py,
autocast, loss, CUDA-graph capture, resident batches) and evaluation (evaluation.py).

Nothing here knows of run directories: the loop reports each epoch's record and each checkpoint
to its callbacks and returns the result; `zoology.runner` records them.
"""

from zoology.training.loop import Callbacks, Diverged, train

__all__ = ["Callbacks", "Diverged", "train"]
