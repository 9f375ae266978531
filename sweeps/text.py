"""Language modelling on the text preset (configs/text.yaml: the Python documentation as bytes) with
three mixer families at the preset's size: the Based hybrid, attention (the same hybrid with softmax
attention) and Mamba-lite.

    python -m zoology.launch sweeps/text.py
    python -m zoology.plot runs/text --plot curves
"""

from zoology.config import TrainConfig

base = TrainConfig.from_yaml("text")
heads = base.model.mixers[1].kwargs["num_heads"]
models = {
    "based": base.model.mixers,
    "attention": [base.model.mixers[0], {"name": "attention", "kwargs": {"num_heads": heads}}],
    "mamba": [{"name": "mamba", "kwargs": {"d_state": 16, "d_conv": 4, "expand": 2}}],
}
configs = [base.set({"model.mixers": mixers, "name": f"text-{name}"}) for name, mixers in models.items()]
