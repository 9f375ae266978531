"""The small CPU default: every mixer family at two recurrent-state sizes on one small MQAR.

    python -m zoology.launch sweeps/mqar.py

Data, learning rate and epochs come from configs/attention.yaml; each family's model comes from its
own preset in configs/. Finishes in minutes on a 2-core CPU; uses a GPU when present.
"""

from zoology.config import TrainConfig

shared = TrainConfig.from_yaml("attention")
common = {"data": shared.data.model_dump(), "lr": shared.lr, "max_epochs": shared.max_epochs}

# preset -> updates that give two state sizes of that family
sizes = {
    "attention": [{"model.d_model": 32}, {"model.d_model": 64}],
    "sliding_window": [{"model.mixers.1.kwargs.window_size": 8}, {"model.mixers.1.kwargs.window_size": 24}],
    "based": [{"model.mixers.1.kwargs.feature_dim": 4}, {"model.mixers.1.kwargs.feature_dim": 16}],
    "rebased": [{"model.mixers.1.kwargs.feature_dim": 4}, {"model.mixers.1.kwargs.feature_dim": 16}],
    "linear_attention": [{"model.d_model": 32}, {"model.d_model": 64}],
    "leap": [{"model.d_model": 32}, {"model.d_model": 64}],
    "mamba": [{"model.mixers.0.kwargs.d_state": 4}, {"model.mixers.0.kwargs.d_state": 16}],
}


def label(preset: str, update: dict) -> str:
    return "-".join([preset, *(f"{key.rpartition('.')[2]}{value}" for key, value in update.items())])


configs = [
    TrainConfig.from_yaml(preset).set(common | update | {"name": label(preset, update)})
    for preset, updates in sizes.items()
    for update in updates
]
