"""MGDA-UB (Sener & Koltun 2018): the Frank-Wolfe min-norm solver by hand, the representation
gradients, the combined gradient, SAC on actor and critic, config errors."""

import pytest
import torch
from torch.func import functional_call

from mtrl.agents import SAC
from mtrl.config import load_config
from mtrl.data import Batch
from mtrl.errors import MtrlError
from mtrl.nn import MultiHead, task_parameter_names
from mtrl.optim import MGDA, TaskLoss, build_combiner, min_norm_2, min_norm_weights
from mtrl.optim.gradient_methods import project_simplex

T, IN, B = 3, 4, 5


def gram_of(*vectors) -> torch.Tensor:
    g = torch.tensor(vectors, dtype=torch.float64)
    return g @ g.T


def point(weights: torch.Tensor, *vectors) -> torch.Tensor:
    return weights @ torch.tensor(vectors, dtype=torch.float64)


def assert_simplex(w: torch.Tensor) -> None:
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=w.dtype))


# ------------------------------------------------------------------------------- solver
def test_two_orthogonal_unit_gradients_give_equal_weights():
    w = min_norm_weights(gram_of((1.0, 0.0), (0.0, 1.0)))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_min_norm_2_covers_the_three_cases_of_the_paper():
    # Algorithm 1 / Fig. 1: gamma weighs x1; (x1.x1, x1.x2, x2.x2)
    one = lambda *v: [torch.tensor(float(x)) for x in v]  # noqa: E731
    gamma, cost = min_norm_2(*one(1, 0, 4))  # x1=(1,0), x2=(0,2): gamma = 4/5
    assert abs(float(gamma) - 0.8) < 1e-6 and abs(float(cost) - 0.8) < 1e-6
    gamma, cost = min_norm_2(*one(1, 2, 8))  # x1.x2 >= x1.x1: x1 itself
    assert float(gamma) == 1.0 and float(cost) == 1.0
    gamma, cost = min_norm_2(*one(8, 2, 1))  # x1.x2 >= x2.x2: x2 itself
    assert float(gamma) == 0.0 and float(cost) == 1.0


def test_a_gradient_inside_the_hull_of_the_others_gets_the_hand_computed_min_norm_point():
    # g3 = (g1 + g2) / 2 lies inside the hull of g1 = (1, 0), g2 = (0, 2). By hand, the
    # min-norm point of the segment g1-g2 is gamma g1 + (1 - gamma) g2 with
    # gamma = (g2.g2 - g1.g2) / |g1 - g2|^2 = 4 / 5: the point (0.8, 0.4), |.|^2 = 0.8.
    vectors = ((1.0, 0.0), (0.0, 2.0), (0.5, 1.0))
    w = min_norm_weights(gram_of(*vectors))
    assert_simplex(w)
    torch.testing.assert_close(point(w, *vectors), torch.tensor([0.8, 0.4], dtype=torch.float64))
    # an interior vector of a triangle: the hull's min-norm point is the foot on edge g1-g2,
    # (1, 1), reached with the weights (1/2, 1/2) on g1, g2 and none on the others
    vectors = ((2.0, 0.0), (0.0, 2.0), (2.0, 2.0), (1.2, 1.2))
    w = min_norm_weights(gram_of(*vectors))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64))


def test_orthogonal_gradients_give_inverse_squared_norm_weights():
    """The MGDA-UB case in mtrl (disjoint rows per task): a diagonal Gram matrix."""
    for num in (10, 50):
        d = torch.rand(num, dtype=torch.float64, generator=torch.Generator().manual_seed(num)) + 0.1
        w = min_norm_weights(torch.diag(d), iterations=num)
        torch.testing.assert_close(w, (1 / d) / (1 / d).sum())


def test_frank_wolfe_reaches_the_optimality_conditions_on_random_gradients():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(6, 20, dtype=torch.float64, generator=g) + torch.randn(
            1, 20, dtype=torch.float64, generator=g)
        gram = x @ x.T
        w = min_norm_weights(gram, iterations=250)
        assert_simplex(w)
        # reference: projected gradient descent to convergence
        ref = torch.full((6,), 1 / 6, dtype=torch.float64)
        step = 1 / torch.linalg.matrix_norm(gram, 2)
        for _ in range(3000):
            ref = project_simplex(ref - step * gram @ ref)
        # plain Frank-Wolfe converges as O(1/k) when the optimum lies on a face: the authors'
        # 250 iterations land within 1e-3 of the minimum
        assert float(w @ gram @ w) <= float(ref @ gram @ ref) * (1 + 1e-3)


def test_inactive_tasks_get_no_weight():
    gram = torch.diag(torch.tensor([1.0, 4.0, 0.01]))  # task 2 would take almost everything
    w = min_norm_weights(gram, active=torch.tensor([True, True, False]))
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2, 0.0]))
    w = min_norm_weights(gram, active=torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(w, torch.full((3,), 1 / 3))


# ----------------------------------------------------------------------------- combiner
def make_net(seed: int = 0) -> MultiHead:
    torch.manual_seed(seed)
    return MultiHead(IN, 1, T, hidden_sizes=(8, 8))


def make_loss(net: MultiHead, seed: int = 0) -> TaskLoss:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T * B, IN, generator=g)
    y = torch.randn(T * B, generator=g) * torch.tensor([1.0, 3.0, 0.3]).repeat_interleave(B)
    task = torch.arange(T).repeat_interleave(B)

    def rows(params, x, y, task):
        return (functional_call(net, params, (x, task)).squeeze(-1) - y).pow(2)

    return TaskLoss(rows, dict(net.named_parameters()), (x, y, task), T,
                    task_parameter_names(net), shared_layer="trunk.2.weight")


def representation_gradients(net: MultiHead, seed: int = 0) -> torch.Tensor:
    """By hand: grad_Z L_t of the last shared layer's output Z (pre-activation), (T, T*B*8)."""
    loss = make_loss(net, seed)
    x, y, task = loss.rows
    z = net.trunk[:3](torch.cat([x, torch.eye(T)[task]], -1))  # Linear, ReLU, Linear
    z.retain_grad()
    out = net.head(net.trunk[3](z), task).squeeze(-1)
    per_task = (out - y).pow(2).view(T, B).mean(1)
    grads = []
    for t in range(T):
        grads.append(torch.autograd.grad(per_task[t], z, retain_graph=True)[0].reshape(-1))
    return torch.stack(grads)


def test_representation_gram_is_the_gram_of_the_gradients_of_the_last_shared_output():
    net = make_net()
    combiner = MGDA(T)
    losses, gram = combiner.representation_gram(make_loss(net))
    g = representation_gradients(net)
    torch.testing.assert_close(gram, g @ g.T)  # diagonal: each task touches its own rows
    torch.testing.assert_close(losses, make_loss(net).values().detach())


@pytest.mark.parametrize("gradients", ["representation", "parameters"])
def test_mgda_gradient_is_the_gradient_of_the_min_norm_weighted_losses(gradients):
    net = make_net()
    combiner = build_combiner("mgda", T, gradients=gradients)
    net.zero_grad()
    losses = combiner.backward(make_loss(net))
    got = {n: p.grad.clone() for n, p in net.named_parameters()}
    w = combiner.weights
    assert_simplex(w)
    if gradients == "representation":
        g = representation_gradients(net)
        sq = g.pow(2).sum(1)
        torch.testing.assert_close(w, (1 / sq) / (1 / sq).sum())
    else:  # the min-norm point of every shared parameter's task gradients
        _, per_task = make_loss(net).task_gradients()
        shared = make_loss(net).shared_parameters
        flat = torch.cat([per_task[n].reshape(T, -1) for n in shared], 1)
        gram = flat @ flat.T
        value = w @ gram @ w
        for t in range(T):  # optimality: no vertex improves on the min-norm point
            assert float(gram[t] @ w) >= float(value) * (1 - 1e-4)
    net.zero_grad()
    (make_loss(net).values() * w).sum().backward()
    for n, p in net.named_parameters():
        torch.testing.assert_close(got[n], p.grad)
    torch.testing.assert_close(losses, make_loss(net).values().detach())
    torch.testing.assert_close(combiner.metrics()["weights"].sum(), torch.tensor(float(T)))


def test_mgda_errors_and_positive_losses_with_loss_normalisation():
    with pytest.raises(MtrlError, match="mgda: normalization"):
        MGDA(T, normalization="max")
    with pytest.raises(MtrlError, match="mgda: gradients"):
        MGDA(T, gradients="all")
    assert not MGDA.positive_losses and not MGDA(T, normalization="l2").positive_losses
    assert MGDA(T, normalization="loss+").positive_losses
    net = make_net()
    with pytest.raises(MtrlError, match="layer 'nope'"):
        MGDA(T, layer="nope").backward(make_loss(net))
    with pytest.raises(MtrlError, match="no shared bias"):
        MGDA(T, layer="trunk.2.bias").backward(make_loss(net))


def test_config_mgda_options_and_one_line_errors():
    config = load_config("mt10_mgda", ["agent.combiners.mgda.normalization=l2"])
    assert config.agent.actor_combiner == config.agent.critic_combiner == "mgda"
    assert config.agent.combiners.mgda.normalization == "l2"
    with pytest.raises(MtrlError, match="agent.combiners.mgda") as info:
        load_config("mt10_mgda", ["agent.combiners.mgda.tolerance=1e-5"])
    assert "\n" not in str(info.value)
    with pytest.raises(MtrlError, match="actor_combiner"):  # loss normalisation needs L > 0
        SAC(6, 2, T, {"type": "multihead", "hidden_sizes": [8], "activation": "relu"},
            actor_combiner="mgda", combiners={"mgda": {"normalization": "loss"}})


@pytest.mark.parametrize("network", ["multihead", "mlp"])
def test_sac_with_mgda_on_actor_and_critic_updates(network):
    num, rows = T, 8
    g = torch.Generator().manual_seed(0)
    n = num * rows
    batch = Batch(obs=torch.randn(n, 6, generator=g), action=torch.rand(n, 2, generator=g) * 2 - 1,
                  reward=torch.rand(n, generator=g), next_obs=torch.randn(n, 6, generator=g),
                  terminated=torch.zeros(n), task_id=torch.arange(num).repeat_interleave(rows),
                  rows_per_task=rows)
    spec = {"type": network, "hidden_sizes": [16, 16], "activation": "relu"}
    agent = SAC(6, 2, num, spec, actor_combiner="mgda", critic_combiner="mgda", seed=0)
    before = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    for _ in range(3):
        metrics = agent.update(batch)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert any(not torch.equal(before[k], v) for k, v in agent.critic.state_dict().items())
    for key in ("critic_weights", "actor_weights"):
        if key in metrics:
            assert (metrics[key] >= 0).all()
            torch.testing.assert_close(metrics[key].sum(), torch.tensor(float(num)))
