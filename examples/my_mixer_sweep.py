"""The example mixer next to attention on the small CPU MQAR (a few minutes on a laptop CPU).

python -m zoology.launch examples/my_mixer_sweep.py   # from the repository root
"""

from zoology.config import TrainConfig

base = TrainConfig.from_yaml("attention")

configs = [
    base.set({"model.mixers.1.name": mixer, "model.mixers.1.kwargs": {}})
    for mixer in ("attention", "examples.my_mixer.CumulativeMean")
]
