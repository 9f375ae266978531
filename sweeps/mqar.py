"""The small CPU default: softmax attention and BaseConv on a small MQAR.

python -m zoology.launch sweeps/mqar.py
"""

from zoology.config import TrainConfig

base = TrainConfig.from_yaml("attention")

configs = [
    base.set({"model.d_model": d, "lr": lr, "model.mixers.1.name": mixer, "model.mixers.1.kwargs": {}})
    for mixer in ("attention", "base_conv")
    for d in (32, 64)
    for lr in (3e-3,)
]
