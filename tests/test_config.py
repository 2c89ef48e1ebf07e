"""Configuration: a bad value is refused naming its dotted key."""



import pytest
import torch

from flosssweep.config import ConfigError, resolve

torch.set_num_threads(1)

SMALL = {"model.hidden": 16, "train.length": 40, "train.batch": 8, "train.epochs": 30, "train.success_window": 10,
         "floss.pre_steps": 5, "floss.horizon": 20, "floss.warmup": 5}



@pytest.mark.parametrize("overrides, key", [
    ({"task.dleay": 3}, "task.dleay"),
    ({"train.epochs": "many"}, "train.epochs"),
    ({"floss.k": 81}, "floss.k"),
    ({"model.arch": "lstm", "floss.k": 161}, "floss.k"),
    ({"task.bits": 3, "task.delay": 10}, "task.delay"),
    ({"floss.mode": "sometimes"}, "floss.mode"),
])
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        resolve(overrides)
    assert err.value.key == key


