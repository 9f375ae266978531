import pytest

from zoology.config import TrainConfig


def tiny_config(updates: dict | None = None) -> TrainConfig:
    """A [base_conv, attention] model on a small, easy MQAR; trains in seconds on a CPU."""
    config = TrainConfig.model_validate(
        {
            "model": {"vocab_size": 64, "d_model": 32, "mixers": ["base_conv", "attention"]},
            "data": {
                "train": [{"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 4000}],
                "test": [{"vocab_size": 64, "input_seq_len": 32, "num_kv_pairs": 4, "num_examples": 200}],
                "batch_size": 64,
            },
            "lr": 1e-2,
            "max_epochs": 2,
            "device": "cpu",
        }
    )
    return config.set(updates) if updates else config


@pytest.fixture
def tiny():
    return tiny_config
