"""MGDA-UB's one-backward representation gradients (the per-row bias probe) against references:
T per-task backward passes to an explicit Z (twin critics of SAC, by hand), and the per-row
vmap of the bias gradient (every architecture); the fallback where no probe fits."""

import warnings

import pytest
import torch
from torch.func import functional_call

from mtrl.agents import SAC
from mtrl.data import Batch
from mtrl.optim import MGDA, min_norm_weights
from mtrl.optim.mgda import diagonal_min_norm_weights

T, ROWS, OBS, ACT = 3, 4, 6, 2


def make_batch(num_tasks: int = T, rows: int = ROWS, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = num_tasks * rows
    return Batch(obs=torch.randn(n, OBS, generator=g),
                 action=torch.rand(n, ACT, generator=g) * 2 - 1,
                 reward=torch.rand(n, generator=g) * torch.arange(1.0, num_tasks + 1)
                 .repeat_interleave(rows),
                 next_obs=torch.randn(n, OBS, generator=g), terminated=torch.zeros(n),
                 task_id=torch.arange(num_tasks).repeat_interleave(rows), rows_per_task=rows)


def make_agent(network: dict, **kwargs) -> SAC:
    spec = {"hidden_sizes": [16, 16], "activation": "relu", **network}
    return SAC(OBS, ACT, T, spec, seed=0, **kwargs)


def losses_of(agent: SAC, batch: Batch):
    """Fresh critic and actor TaskLoss objects of one batch (fixed noise)."""
    target = agent.critic_targets(batch, torch.zeros(batch.obs.shape[0], ACT))
    noise = torch.randn(batch.obs.shape[0], ACT, generator=torch.Generator().manual_seed(1))
    return (lambda: agent.critic_loss(batch, target)), (lambda: agent.actor_loss(batch, noise))


def per_task_backward_gram(agent: SAC, batch: Batch) -> torch.Tensor:
    """By hand, for multi-head twin critics: Z = both critics' last shared layer outputs
    (pre-activation), captured with a forward hook in each member run on its own (no vmap);
    one autograd.grad of L_t to Z per task; Gram of the flattened gradients (T, T)."""
    critic = agent.critic
    state = critic.member_state()
    target = agent.critic_targets(batch, torch.zeros(batch.obs.shape[0], ACT))
    x = torch.cat([batch.obs, batch.action], -1)
    zs, qs = [], []
    layer = critic.template.trunk[2]
    for c in range(critic.size):
        captured = []
        handle = layer.register_forward_hook(lambda m, i, out: captured.append(out))
        qs.append(functional_call(critic.template, {k: v[c] for k, v in state.items()},
                                  (x, batch.task_id)).squeeze(-1))
        handle.remove()
        zs.append(captured[0])
    rows = sum(0.5 * (q - target).pow(2) for q in qs)
    per_task = rows.view(T, -1).mean(1)
    grads = []
    for t in range(T):
        g = torch.autograd.grad(per_task[t], zs, retain_graph=True)
        grads.append(torch.cat([gi.reshape(-1) for gi in g]))
    g = torch.stack(grads)
    return g @ g.T


def test_probe_matches_t_per_task_backward_passes_on_the_twin_critics():
    agent = make_agent({"type": "multihead"})
    batch = make_batch()
    critic_loss, _ = losses_of(agent, batch)
    gram_hand = per_task_backward_gram(agent, batch)
    assert torch.count_nonzero(gram_hand - torch.diag(gram_hand.diagonal())) == 0 or \
        float((gram_hand - torch.diag(gram_hand.diagonal())).abs().max()) < 1e-12
    combiner = MGDA(T)
    losses, gram = combiner.representation_gram(critic_loss())
    assert combiner._probe_dims[("trunk__2__bias", (2, 16))] == 1  # after the member dim
    torch.testing.assert_close(gram, gram_hand, rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(losses, critic_loss().values().detach())

    # the combined gradient: the losses weighted by the hand-made Gram's min-norm point
    agent.critic.zero_grad()
    combiner.backward(critic_loss())
    got = {n: p.grad.clone() for n, p in agent.critic.named_parameters()}
    w = min_norm_weights(gram_hand, combiner.iterations)
    d = gram_hand.diagonal()
    torch.testing.assert_close(w, (1 / d) / (1 / d).sum())  # diagonal: inverse squared norms
    torch.testing.assert_close(combiner.weights, w)
    agent.critic.zero_grad()
    (critic_loss().values() * w * T / T).sum().backward()  # loss.weights = 1/T: scale 1
    for n, p in agent.critic.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-7)


NETWORKS = [
    {"type": "multihead"},
    {"type": "mlp"},
    {"type": "softmod", "hidden_sizes": [16, 16]},
    {"type": "care", "care": {"context": "learned"}},
    {"type": "film"},
    {"type": "paco"},
    {"type": "moore"},
    {"type": "bronet", "hidden_sizes": [16]},
    {"type": "routing"},
]


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n["type"])
@pytest.mark.parametrize("which", ["critic", "actor"])
def test_probe_equals_the_per_row_vmap_reference_on_every_architecture(network, which):
    agent = make_agent(network)
    critic_loss, actor_loss = losses_of(agent, make_batch())
    make = critic_loss if which == "critic" else actor_loss
    combiner = MGDA(T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the probe fits: no fallback warning
        losses, gram = combiner.representation_gram(make())
    assert list(combiner._probe_dims.values()) != [None]
    ref_losses, ref_gram = combiner.representation_gram_reference(make())
    torch.testing.assert_close(gram, ref_gram, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-5, atol=1e-6)
    if network["type"] != "routing":  # a task may route around the layer: no gradient
        assert float(gram.diagonal().min()) > 0

    # gradients: the fast backward equals the reference weights' weighted-loss backward
    params = make().params
    for p in params.values():
        p.grad = None
    combiner.backward(make())
    got = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
    reference = MGDA(T)
    w = reference.solve(ref_gram, ref_losses, make(), diagonal=True)
    torch.testing.assert_close(combiner.weights, w, rtol=1e-4, atol=1e-6)
    for p in params.values():
        p.grad = None
    loss = make()
    (loss.values() * w * loss.weights * T).sum().backward()
    for n, p in params.items():
        if p.grad is not None:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6)


def test_an_architecture_without_a_row_probe_falls_back_to_the_reference_with_a_warning():
    # cross-stitch adds its bias per column, (T, 1, d): no position of a row dimension fits
    agent = make_agent({"type": "cross_stitch"})
    critic_loss, _ = losses_of(agent, make_batch())
    combiner = MGDA(T)
    with pytest.warns(UserWarning, match="no per-row probe"):
        losses, gram = combiner.representation_gram(critic_loss())
    ref_losses, ref_gram = combiner.representation_gram_reference(critic_loss())
    torch.testing.assert_close(gram, ref_gram)
    torch.testing.assert_close(losses, ref_losses)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once: no second warning
        combiner.backward(critic_loss())


def test_sac_update_with_mgda_is_the_same_with_the_probe_and_with_the_reference():
    batch = make_batch()
    runs = []
    for force_reference in (False, True):
        agent = make_agent({"type": "multihead"}, actor_combiner="mgda", critic_combiner="mgda")
        if force_reference:
            for combiner in (agent.actor_combiner, agent.critic_combiner):
                combiner.probe_dim = lambda loss, bias: None  # type: ignore[method-assign]
        for _ in range(2):
            metrics = agent.update(batch)
        runs.append((metrics, {k: v.clone() for k, v in agent.critic.state_dict().items()},
                     {k: v.clone() for k, v in agent.actor.state_dict().items()}))
    (m_fast, c_fast, a_fast), (m_ref, c_ref, a_ref) = runs
    for key in ("critic_weights", "actor_weights"):
        torch.testing.assert_close(m_fast[key], m_ref[key], rtol=1e-4, atol=1e-6)
    for fast, ref in ((c_fast, c_ref), (a_fast, a_ref)):
        for k in fast:
            torch.testing.assert_close(fast[k], ref[k], rtol=1e-4, atol=1e-6)


def test_closed_form_of_a_diagonal_gram_is_the_frank_wolfe_limit():
    g = torch.Generator().manual_seed(0)
    for num in (2, 10, 50, 80):  # 80 > the default 50 iterations: Frank-Wolfe needs T - 2
        d = torch.rand(num, dtype=torch.float64, generator=g) + 0.05
        torch.testing.assert_close(diagonal_min_norm_weights(d),
                                   min_norm_weights(torch.diag(d), iterations=num))
        active = torch.rand(num, generator=g) > 0.3
        active[0] = True
        torch.testing.assert_close(diagonal_min_norm_weights(d, active),
                                   min_norm_weights(torch.diag(d), num, active))
    # tiny scales (float32) and zero vectors: the origin is in the hull, they share the weight
    d = torch.tensor([1e-30, 2e-30, 4e-30])
    torch.testing.assert_close(diagonal_min_norm_weights(d), torch.tensor([4, 2, 1]) / 7.0)
    w = diagonal_min_norm_weights(torch.tensor([0.0, 3.0, 0.0, 1.0]))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, 0.5, 0.0]), atol=1e-12, rtol=0)
    w = diagonal_min_norm_weights(torch.tensor([1.0, 4.0, 0.01]), torch.tensor([True, True, False]))
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2, 0.0]))
    w = diagonal_min_norm_weights(torch.ones(3), torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(w, torch.full((3,), 1 / 3))
