"""The actor-critic's speed path (bellman.nets.fast) against the plain computations it replaces:
stacked trunks against two separate MLPs, numpy acting against torch's distributions and the
plain `ActorCritic.sample`, the direct fused-Adam step against optimizer.step(), minibatches and
the entropy left out of the graph."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from bellman.algos.onpolicy import Rollout, RolloutBatch
from bellman.nets import (
    ActorCritic,
    CategoricalHead,
    DiagonalGaussianHead,
    SeparateTrunks,
    StackedTrunks,
    VectorTrunk,
    actor_critic_for,
    gaussian_log_prob,
    orthogonal_init,
)
from bellman.nets.fast import (
    FastPath,
    FlatParameters,
    NumpyTrunks,
    stacked_backward,
    stacked_forward,
    step_optimizer,
    supports_numpy,
)

torch.set_num_threads(1)


def _two_trunks(hidden=(64, 64), in_dim=4, one_hot=None):
    torch.manual_seed(0)
    return [
        orthogonal_init(VectorTrunk(in_dim, hidden, one_hot=one_hot, activation="tanh"))
        for _ in range(2)
    ]


@pytest.mark.parametrize("hidden", [(64, 64), (16,), ()])
def test_stacked_trunks_compute_the_two_trunks_and_their_gradients(hidden):
    actor, critic = _two_trunks(hidden)
    stacked = StackedTrunks(actor, critic)
    obs = torch.randn(32, 4)
    features = stacked(obs)
    reference = (actor(obs), critic(obs))
    for ours, theirs in zip(features, reference, strict=True):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(stacked.actor_features(obs), reference[0])
    torch.testing.assert_close(stacked.critic_features(obs), reference[1])
    # The same gradients: d/d W of any function of the two outputs.
    if hidden:
        weights = torch.randn(2, 32, actor.out_dim)
        (features[0] * weights[0] + (features[1] * weights[1]) ** 2).sum().backward()
        (reference[0] * weights[0] + (reference[1] * weights[1]) ** 2).sum().backward()
    for layer, (a, c) in enumerate(zip(actor.layers, critic.layers, strict=True)):
        torch.testing.assert_close(stacked.weights[layer].grad[0], a.weight.grad.T)
        torch.testing.assert_close(stacked.weights[layer].grad[1], c.weight.grad.T)
        bias_grads = torch.stack([a.bias.grad, c.bias.grad])
        torch.testing.assert_close(stacked.biases[layer].grad[:, 0], bias_grads)
    numpy_actor, numpy_critic = NumpyTrunks(stacked)(obs.numpy())
    np.testing.assert_allclose(numpy_actor, reference[0].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(numpy_critic, reference[1].detach().numpy(), atol=1e-6)
    if not hidden:
        return
    # The speed path's forward and backward by hand: the same features and gradients.
    autograd = [p.grad.clone() for p in stacked.parameters()]
    stacked.zero_grad()
    actor_features, critic_features, activations = stacked_forward(stacked, obs)
    torch.testing.assert_close(actor_features, reference[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(critic_features, reference[1], rtol=0, atol=1e-6)
    features_grad = torch.stack([weights[0], 2 * weights[1] ** 2 * critic_features])
    stacked_backward(stacked, activations, features_grad)
    for by_hand, expected in zip([p.grad for p in stacked.parameters()], autograd, strict=True):
        torch.testing.assert_close(by_hand, expected, rtol=1e-5, atol=1e-5)  # (grads up to ~30)


def test_stacked_trunks_take_one_hot_observations_and_refuse_different_shapes():
    actor, critic = _two_trunks((8,), in_dim=5, one_hot=5)
    obs = torch.tensor([0, 3, 4])
    features = StackedTrunks(actor, critic)(obs)
    torch.testing.assert_close(features[1], critic(obs))
    with pytest.raises(ValueError, match="same shape"):
        StackedTrunks(actor, VectorTrunk(5, (9,), one_hot=5))


def test_actor_critic_for_stacks_mlps_with_the_initial_weights_of_separate_trunks():
    box, discrete = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    kwargs = {"network": "mlp", "hidden": (8, 8), "log_std_init": 0.0, "env_id": "test"}
    torch.manual_seed(3)
    stacked = actor_critic_for(box, discrete, shared=False, **kwargs)
    assert isinstance(stacked.trunks, StackedTrunks)
    # The same draws as building the two trunks, the head and the value head one by one.
    torch.manual_seed(3)
    actor = orthogonal_init(VectorTrunk(4, (8, 8), activation="tanh"))
    head = CategoricalHead(8, 2)
    critic = orthogonal_init(VectorTrunk(4, (8, 8), activation="tanh"))
    separate = ActorCritic(SeparateTrunks(actor, critic), head)
    obs = torch.randn(6, 4)
    for ours, theirs in zip(stacked(obs), separate(obs), strict=True):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(stacked.value(obs), separate.value(obs))
    torch.testing.assert_close(stacked.mode(obs), separate.mode(obs))
    shared = actor_critic_for(box, discrete, shared=True, **kwargs)
    assert not supports_numpy(shared)
    # the speed path's acting falls back to the plain path's where numpy acting does not apply
    many = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    plain = shared.sample(many, np.random.default_rng(4))
    for ours, theirs in zip(FastPath(shared).sample(many, np.random.default_rng(4)), plain,
                            strict=True):  # fmt: skip
        np.testing.assert_array_equal(ours, theirs)


def test_numpy_acting_samples_the_same_categorical_distribution():
    torch.manual_seed(0)
    network = actor_critic_for(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3),
                               network="mlp", hidden=(16,), shared=False, log_std_init=0.0,
                               env_id="test")  # fmt: skip
    with torch.no_grad():
        network.policy_head.logits.weight.mul_(100)  # a distribution far from uniform
    assert supports_numpy(network)
    obs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    many = np.repeat(obs, 20_000, axis=0)
    actions, log_probs, values = FastPath(network).sample(many, np.random.default_rng(1))
    assert actions.dtype == np.int64 and log_probs.dtype == values.dtype == np.float32
    # the plain path draws the same actions from the same generator
    plain_actions, plain_log_probs, plain_values = network.sample(many, np.random.default_rng(1))
    np.testing.assert_array_equal(plain_actions, actions)
    np.testing.assert_allclose(plain_log_probs, log_probs, atol=1e-5)
    np.testing.assert_allclose(plain_values, values, atol=1e-5)
    with torch.no_grad():
        logits, expected_values = network(torch.from_numpy(many))
        expected_log_probs, _, _ = network.evaluate(
            torch.from_numpy(many), torch.from_numpy(actions)
        )
    np.testing.assert_allclose(log_probs, expected_log_probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(values, expected_values.numpy(), atol=1e-5)
    probabilities = logits[[0, 20_000]].softmax(-1).numpy()
    for row in range(2):
        taken = actions[row * 20_000 : (row + 1) * 20_000]
        frequencies = np.bincount(taken, minlength=3) / len(taken)
        np.testing.assert_allclose(frequencies, probabilities[row], atol=0.015)


def test_numpy_acting_samples_the_same_gaussian_distribution():
    torch.manual_seed(0)
    network = actor_critic_for(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)),
                               network="mlp", hidden=(16, 16), shared=False, log_std_init=-0.5,
                               env_id="test")  # fmt: skip
    obs = np.repeat(np.ones((1, 3), np.float32), 50_000, axis=0)
    actions, log_probs, values = FastPath(network).sample(obs, np.random.default_rng(2))
    assert actions.shape == (50_000, 2) and actions.dtype == np.float32
    # the plain path draws the same actions from the same generator
    plain_actions, plain_log_probs, plain_values = network.sample(obs, np.random.default_rng(2))
    np.testing.assert_allclose(plain_actions, actions, atol=1e-5)
    np.testing.assert_allclose(plain_log_probs, log_probs, atol=1e-5)
    np.testing.assert_allclose(plain_values, values, atol=1e-5)
    with torch.no_grad():
        mean, expected_values = network(torch.from_numpy(obs))
        log_std = network.policy_head.log_std
        expected = gaussian_log_prob(mean, log_std, torch.from_numpy(actions))
    np.testing.assert_allclose(log_probs, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(values, expected_values.numpy(), atol=1e-5)
    np.testing.assert_allclose(actions.mean(0), mean[0].numpy(), atol=0.01)
    np.testing.assert_allclose(actions.std(0), np.exp(-0.5) * np.ones(2), rtol=0.01)


def test_numpy_categorical_sampling_never_picks_an_impossible_action():
    head = CategoricalHead(1, 3)
    logits = np.array([[0.0, -np.inf, 0.0], [-np.inf, -np.inf, 5.0]], np.float32)
    actions, log_probs = head.sample_numpy(np.repeat(logits, 500, axis=0), np.random.default_rng(0))
    assert set(actions[:500]) == {0, 2} and set(actions[500:]) == {2}
    np.testing.assert_allclose(log_probs[500:], 0.0)


def test_the_direct_fused_adam_step_is_optimizer_step_bit_for_bit():
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Linear(5, 3) for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-2, eps=1e-5, fused=True)
                  for m in (ours, theirs)]  # fmt: skip
    for step in range(5):
        x = torch.randn(8, 5)
        for model, optimizer in zip((ours, theirs), optimizers, strict=True):
            optimizer.param_groups[0]["lr"] = 1e-2 / (step + 1)  # annealed, as in the loops
            model.zero_grad()
            (model(x) ** 2).sum().backward()
        step_optimizer(optimizers[0])
        optimizers[1].step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    state, reference = optimizers[0].state_dict(), optimizers[1].state_dict()
    for index, moments in reference["state"].items():
        for name, value in moments.items():
            assert torch.equal(state["state"][index][name], value), name
    # Other optimisers go through their own step.
    rmsprop = torch.optim.RMSprop(ours.parameters(), lr=0.1)
    before = ours.weight.detach().clone()
    step_optimizer(rmsprop)
    assert not torch.equal(ours.weight, before)


def test_flat_parameters_step_is_optimizer_step_and_survives_a_reload():
    """FlatParameters: the parameters and gradients become views of two buffers, the module
    still works, and its one-kernel Adam step is optimizer.step() (to the last bit: the kernel's
    vector loop and its scalar tail round differently, and the buffer moves elements between
    them), before and after
    the optimizer's state is replaced (load_state_dict, as a resume does) and after a gradient
    is set to None elsewhere; its clip is torch's."""
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(),
                                        torch.nn.Linear(4, 2)) for _ in range(2))  # fmt: skip
    theirs.load_state_dict(ours.state_dict())
    flat = FlatParameters(list(ours.parameters()))
    assert all(p.data_ptr() >= flat.data.data_ptr() for p in ours.parameters())
    assert flat.data.numel() == sum(p.numel() for p in theirs.parameters())
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-2, eps=1e-5, fused=True)
                  for m in (ours, theirs)]  # fmt: skip
    for step in range(6):
        x = torch.randn(8, 5)
        if step == 3:  # a resume: the optimizer's state tensors are replaced (and changed)
            saved = optimizers[1].state_dict()
            for moments in saved["state"].values():
                moments["exp_avg"] = 2 * moments["exp_avg"]
            for optimizer in optimizers:
                optimizer.load_state_dict(saved)
        if step == 4:
            next(ours.parameters()).grad = None
        flat.zero_grad()
        theirs.zero_grad()
        for model in (ours, theirs):
            (model(x) ** 2).sum().backward()
        flat.clip_grad_norm(0.5)
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.5)
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)
            a.grad.copy_(b.grad)  # (the norms may differ in the last bit)
        flat.step(optimizers[0])
        optimizers[1].step()
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert flat.moments is not None  # the one-kernel path ran
    state, reference = optimizers[0].state_dict(), optimizers[1].state_dict()
    for index, moments in reference["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(state["state"][index][name], value, rtol=1e-6, atol=0)


def test_minibatches_cover_the_batch_once_and_the_whole_batch_is_not_shuffled():
    batch = RolloutBatch(*(torch.arange(8.0) for _ in range(6)))
    assert list(batch.minibatches(8)) == [batch]
    parts = list(batch.minibatches(2))
    assert len(parts) == 4
    assert sorted(torch.cat([p.returns for p in parts]).tolist()) == list(range(8))
    for part in parts:  # each sample keeps its own fields
        assert torch.equal(part.obs, part.advantages)


def test_rollout_tensors_share_the_arrays_on_the_cpu():
    arrays = Rollout(*(np.zeros((2, 3), np.float32) for _ in range(8)))
    tensors = arrays.tensors(torch.device("cpu"))
    arrays.rewards[1, 2] = 5.0
    assert float(tensors.rewards[1, 2]) == 5.0


@pytest.mark.parametrize("gaussian", [False, True])
def test_entropy_outside_the_graph_has_the_same_value_and_no_gradient(gaussian):
    head = DiagonalGaussianHead(4, 2) if gaussian else CategoricalHead(4, 3)
    params = head(torch.randn(5, 4))
    actions = torch.randn(5, 2) if gaussian else torch.tensor([0, 1, 2, 0, 1])
    log_probs, entropy = head.log_prob_entropy(params, actions)
    detached_log_probs, detached = head.log_prob_entropy(params, actions, entropy_grad=False)
    torch.testing.assert_close(detached, entropy.detach())
    torch.testing.assert_close(detached_log_probs, log_probs)
    assert entropy.requires_grad and not detached.requires_grad
