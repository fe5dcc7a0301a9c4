"""The config keys of issue 14 (``torchnde run``): the learning-rate schedule, noise relative to
the standard deviation or the mean, the threshold modes, the final check's ratio, network scales
and factories (a file next to the config). Each turns into the library's objects, and each
mistake is one error naming the key. In-process: nothing trains."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch

from torchnde.cli import main
from torchnde.cli._config import load_config
from torchnde.hybrid import HybridModel, ScaledNetwork
from torchnde.training import CosineSchedule, StepSchedule

BASE = textwrap.dedent(
    """\
    name = "lv"

    [system]
    states = ["x", "y"]
    equations = { x = "alpha*x + NN1(x, y)", y = "NN2(x, y) - theta*y" }
    constants = { alpha = 1.1 }
    parameters = { theta = 0.2 }

    [system.networks]
    NN1 = { hidden = 16 }
    NN2 = {}

    [data.synthetic]
    equations = { x = "alpha*x - beta*x*y", y = "gamma*x*y - delta*y" }
    parameters = { alpha = 1.1, beta = 0.4, gamma = 0.1, delta = 0.4 }
    initial = { x = 10.0, y = 10.0 }
    t_end = 10.0

    [training]
    adam_steps = 300

    [discovery]
    threshold = 0.1
    """
)


def write(tmp_path, text: str):
    path = tmp_path / "lv.toml"
    path.write_text(text)
    return path


def error(tmp_path, capsys, text: str) -> str:
    code = main(["run", str(write(tmp_path, text)), "--out", str(tmp_path / "runs")])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_the_schedule_is_a_name_or_a_table_with_its_settings(tmp_path):
    assert load_config(write(tmp_path, BASE)).spec.training.schedule is None  # constant
    text = BASE.replace("adam_steps = 300", 'adam_steps = 300\nschedule = "cosine"')
    assert load_config(write(tmp_path, text)).spec.training.schedule == "cosine"
    text = BASE.replace(
        "adam_steps = 300",
        'adam_steps = 300\nschedule = { name = "step", every = 50, gamma = 0.5 }',
    )
    config = load_config(write(tmp_path, text))
    assert config.spec.training.schedule == StepSchedule(every=50, gamma=0.5)
    text = BASE.replace(
        "adam_steps = 300", 'adam_steps = 300\nschedule = { name = "cosine", min_lr = 1e-4 }'
    )
    assert load_config(write(tmp_path, text)).spec.training.schedule == CosineSchedule(1e-4)
    text = BASE.replace("adam_steps = 300", 'adam_steps = 300\nschedule = "constant"')
    assert load_config(write(tmp_path, text)).spec.training.schedule is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'schedule = "linear"',
            r"`training.schedule`: must be one of cosine, step, exponential, constant, got "
            r"'linear'",
        ),
        ('schedule = { name = "cosin" }', r"`training.schedule.name`: .*did you mean 'cosine'"),
        ('schedule = { name = "cosine", every = 5 }', r"cosine schedule takes min_lr, got every"),
        ('schedule = { name = "step", gamma = 2.0 }', r"`training.schedule`: `gamma` must lie"),
    ],
)
def test_a_bad_schedule_is_named(tmp_path, capsys, line, message):
    text = BASE.replace("adam_steps = 300", f"adam_steps = 300\n{line}")
    assert re.search(message, error(tmp_path, capsys, text))


def test_noise_relative_to_the_mean_and_the_threshold_modes(tmp_path, capsys):
    text = BASE.replace("t_end = 10.0", 't_end = 10.0\nnoise_relative_to = "mean"').replace(
        "threshold = 0.1", 'threshold = 0.02\nthreshold_mode = "absolute"\nmax_loss_ratio = 1.5'
    )
    config = load_config(write(tmp_path, text))
    assert config.data.noise_relative_to == "mean"
    discovery = config.spec.discovery
    assert (discovery.threshold_mode, discovery.threshold, discovery.max_loss_ratio) == (
        "absolute",
        0.02,
        1.5,
    )
    big = BASE.replace("threshold = 0.1", "threshold = 3.0")
    assert "must be < 1 with threshold_mode = 'share'" in error(tmp_path, capsys, big)
    absolute = big.replace("threshold = 3.0", 'threshold = 3.0\nthreshold_mode = "absolute"')
    assert load_config(write(tmp_path, absolute)).spec.discovery.threshold == 3.0
    bad = BASE.replace("t_end = 10.0", 't_end = 10.0\nnoise_relative_to = "median"')
    assert "`data.synthetic.noise_relative_to`: must be one of std, mean" in error(
        tmp_path, capsys, bad
    )
    low = BASE.replace("threshold = 0.1", "threshold = 0.1\nmax_loss_ratio = 0.5")
    assert "`discovery.max_loss_ratio`: must be ≥ 1" in error(tmp_path, capsys, low)


def test_network_scales_and_a_factory_next_to_the_config(tmp_path, capsys):
    (tmp_path / "my_nets.py").write_text(
        "import torch\n"
        "def build(inputs, outputs):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(inputs, 8), torch.nn.SiLU(),\n"
        "                               torch.nn.Linear(8, outputs))\n"
    )
    text = BASE.replace(
        "NN1 = { hidden = 16 }",
        'NN1 = { factory = "my_nets.py:build", output_scale = 5.0 }',
    ).replace("NN2 = {}", "NN2 = { input_scale = [20.0, 8.0] }")
    config = load_config(write(tmp_path, text))
    nn1 = config.spec.system.networks["NN1"]
    assert nn1.factory == f"{tmp_path / 'my_nets.py'}:build"  # absolute: runs from anywhere
    assert config.resolved["system"]["networks"]["NN1"]["factory"] == nn1.factory
    assert config.spec.system.networks["NN2"].input_scale == (20.0, 8.0)
    model = HybridModel(config.spec.system)
    assert isinstance(model.nets["NN1"], ScaledNetwork)
    assert model.nets["NN1"].network[0].in_features == 2
    model.set_scales(torch.linspace(0, 10, 3, dtype=torch.float64), torch.full((3, 2), 4.0))
    assert model.nets["NN1"].out_scale.item() == 5.0
    assert model.nets["NN2"].in_scale.tolist() == [20.0, 8.0]
    missing = text.replace("my_nets.py:build", "my_nets.py:make")
    message = error(tmp_path, capsys, missing)
    assert "`system.networks.NN1.factory`" in message and "no function 'make'" in message
    nowhere = text.replace("my_nets.py:build", "other.py:build")
    assert "cannot import" in error(tmp_path, capsys, nowhere)
    wrong = BASE.replace("NN2 = {}", "NN2 = { input_scale = [1.0, 2.0, 3.0] }")
    message = error(tmp_path, capsys, wrong)
    assert "`system.networks.NN2.input_scale`: has 3 values but `NN2` takes 2 inputs" in message
