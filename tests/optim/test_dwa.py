"""DWA (Liu et al. 2019): the weights by hand, the windows, the gradient, checkpoints, config."""

import io
import math

import pytest
import torch

from mtrl.agents import SAC
from mtrl.config import load_config
from mtrl.errors import MtrlError
from mtrl.optim import DWA, TaskLoss, build_combiner, dwa_weights

T = 2


def test_equal_ratios_give_equal_weights():
    w = dwa_weights(torch.tensor([2.0, 8.0, 0.5]), torch.tensor([4.0, 16.0, 1.0]))
    torch.testing.assert_close(w, torch.ones(3))


def test_weights_by_hand_and_the_slower_falling_task_gets_more():
    # task 0 halved its loss (r = 0.5), task 1 kept it (r = 1); temperature 2, T = 2
    w = dwa_weights(torch.tensor([2.0, 4.0]), torch.tensor([4.0, 4.0]), temperature=2.0)
    e0, e1 = math.exp(0.5 / 2), math.exp(1.0 / 2)
    torch.testing.assert_close(w, torch.tensor([2 * e0 / (e0 + e1), 2 * e1 / (e0 + e1)]))
    assert w[1] > 1.0 > w[0]
    torch.testing.assert_close(w.sum(), torch.tensor(2.0))
    # a larger temperature flattens the weights
    flat = dwa_weights(torch.tensor([2.0, 4.0]), torch.tensor([4.0, 4.0]), temperature=20.0)
    assert (flat - 1).abs().max() < (w - 1).abs().max()


def param_loss(param: torch.Tensor, scale: torch.Tensor) -> TaskLoss:
    """Task t's loss is scale[t] * (1 + param[t]^2) on one row each (positive)."""

    def rows(params, s, task):
        p = params["p"]
        return s * (1.0 + p[task] ** 2)

    return TaskLoss(rows, {"p": param}, (scale, torch.arange(T)), T)


def test_windows_weights_one_for_two_windows_then_the_ratio_of_window_means():
    combiner = DWA(T, window=2, temperature=2.0)
    param = torch.nn.Parameter(torch.zeros(T))
    # per-update losses: window 1 means (4, 4), window 2 means (2, 4), window 3 ...
    schedule = [(3.0, 5.0), (5.0, 3.0), (1.0, 4.0), (3.0, 4.0), (1.0, 1.0), (1.0, 1.0)]
    seen = []
    for scale in schedule:
        param.grad = None
        losses = combiner.backward(param_loss(param, torch.tensor(scale)))
        torch.testing.assert_close(losses, torch.tensor(scale))
        seen.append(combiner.weights.clone())
    for w in seen[:3]:  # during the first two windows (and right after the first)
        torch.testing.assert_close(w, torch.ones(T))
    expected = dwa_weights(torch.tensor([2.0, 4.0]), torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(seen[3], expected)  # set at the end of window 2
    torch.testing.assert_close(seen[4], expected)
    # window 3 means (1, 1) against (2, 4): ratios (0.5, 0.25) -> task 0 now falls slower
    torch.testing.assert_close(seen[5], dwa_weights(torch.ones(T), torch.tensor([2.0, 4.0])))
    assert seen[5][0] > seen[5][1]


def test_gradient_is_the_weighted_mean_of_the_task_gradients():
    combiner = DWA(T, window=1)
    combiner.weights.copy_(torch.tensor([1.5, 0.5]))
    combiner.windows = 2
    param = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    scale = torch.tensor([1.0, 3.0])
    combiner.backward(param_loss(param, scale))
    # d/dp_t (w_t / T) s_t (1 + p_t^2) = (w_t / 2) s_t 2 p_t
    torch.testing.assert_close(param.grad, torch.tensor([1.5 * 1.0 * 1.0, 0.5 * 3.0 * 2.0]))
    # equal weights: the mean's gradient
    mean = build_combiner("mean", T)
    param.grad = None
    mean.backward(param_loss(param, scale))
    fresh, expect = DWA(T), param.grad.clone()
    param.grad = None
    fresh.backward(param_loss(param, scale))
    torch.testing.assert_close(param.grad, expect)


def test_state_dict_round_trip_mid_window_continues_identically():
    param = torch.nn.Parameter(torch.zeros(T))
    a = DWA(T, window=3)
    gen = torch.Generator().manual_seed(0)
    scales = [torch.rand(T, generator=gen) + 0.5 for _ in range(14)]
    for s in scales[:7]:
        a.backward(param_loss(param, s))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = DWA(T, window=3)
    b.load_state_dict(torch.load(buffer))
    assert (b.updates, b.windows) == (1, 2)
    for s in scales[7:]:
        a.backward(param_loss(param, s))
        b.backward(param_loss(param, s))
        torch.testing.assert_close(a.weights, b.weights)
    assert not torch.equal(a.weights, torch.ones(T))


def test_dwa_needs_positive_losses_and_checks_its_options():
    assert DWA.positive_losses
    spec = {"type": "multihead", "hidden_sizes": [8], "activation": "relu"}
    with pytest.raises(MtrlError, match="actor_combiner=dwa"):
        SAC(6, 2, T, spec, actor_combiner="dwa")
    SAC(6, 2, T, spec, critic_combiner="dwa")
    with pytest.raises(MtrlError, match="dwa: window"):
        DWA(T, window=0)
    with pytest.raises(MtrlError, match="dwa: temperature"):
        DWA(T, temperature=0.0)


def test_config_dwa_preset_and_one_line_errors():
    config = load_config("mt10_dwa", ["agent.combiners.dwa.window=100"])
    assert (config.agent.actor_combiner, config.agent.critic_combiner) == ("mean", "dwa")
    assert config.agent.combiners.dwa.window == 100
    with pytest.raises(MtrlError, match="agent.combiners.dwa") as info:
        load_config("mt10_dwa", ["agent.combiners.dwa.epoch=100"])
    assert "\n" not in str(info.value)
    with pytest.raises(MtrlError, match="agent.combiners.dwa.window"):
        load_config("mt10_dwa", ["agent.combiners.dwa.window=long"])
