"""Config resolution: defaults, shipped tuned files, --config, --set, and every validation path."""

from __future__ import annotations

import dataclasses

import pytest

from bellman.config import field_docs, resolve
from bellman.errors import ConfigError
from bellman.tabular.td import TabularConfig


def test_defaults_then_tuned_file_then_config_file_then_set(tmp_path):
    config, sources = resolve(TabularConfig, "q-learning", "FrozenLake-v1")
    assert config.alpha == 0.5 and config.steps == 100_000 and sources == ["defaults"]

    config, sources = resolve(TabularConfig, "q-learning", "Taxi-v4")
    assert config.steps == 300_000 and config.epsilon_end == 0.1
    assert "bellman/configs/q-learning-Taxi-v4.toml" in sources

    path = tmp_path / "mine.toml"
    path.write_text('algo = "q-learning"\nalpha = 0.25\nsteps = 5000\n')
    config, _ = resolve(TabularConfig, "q-learning", "Taxi-v4", path, ["steps=7_000", "gamma=1"])
    assert (config.alpha, config.steps, config.gamma, config.epsilon_end) == (0.25, 7000, 1.0, 0.1)
    assert isinstance(config.gamma, float)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["alpah=0.3"], "unknown config key 'alpah' (did you mean 'alpha'?)"),
        (["alpha=fast"], "config key 'alpha' expects float, got 'fast'"),
        (["alpha=0"], "config key 'alpha' must be in (0, 1], got 0.0"),
        (["gamma=1.5"], "config key 'gamma' must be in [0, 1], got 1.5"),
        (["gamma=nan"], "config key 'gamma' must be a finite number, got nan"),
        (["steps=-5"], "config key 'steps' must be in [1, inf), got -5"),
        (["steps=1.5"], "config key 'steps' expects int, got '1.5'"),
        (["epsilon_schedule=linaer"], "(did you mean 'linear'?)"),
        (["alpha"], "--set expects key=value, got 'alpha'"),
        (["env=Taxi-v4"], "--env"),
        (
            ["epsilon_schedule=exponential", "epsilon_end=0"],
            "epsilon_schedule = exponential needs epsilon > 0 and epsilon_end > 0",
        ),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_valid(overrides, message):
    with pytest.raises(ConfigError) as error:
        resolve(TabularConfig, "q-learning", "Taxi-v4", None, overrides)
    assert message in str(error.value)


def test_bad_config_files(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("alpha = = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        resolve(TabularConfig, "q-learning", "Taxi-v4", broken)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(TabularConfig, "q-learning", "Taxi-v4", tmp_path / "missing.toml")
    other = tmp_path / "other.toml"
    other.write_text('algo = "sarsa"\n')
    with pytest.raises(ConfigError, match="is a config for 'sarsa', not for 'q-learning'"):
        resolve(TabularConfig, "q-learning", "Taxi-v4", other)
    typed = tmp_path / "typed.toml"
    typed.write_text('alpha = "high"\n')
    with pytest.raises(ConfigError, match="expects float, got str 'high'"):
        resolve(TabularConfig, "q-learning", "Taxi-v4", typed)
    typo = tmp_path / "typo.toml"
    typo.write_text("epsilon_ned = 0.1\n")
    with pytest.raises(ConfigError, match="did you mean 'epsilon_end'"):
        resolve(TabularConfig, "q-learning", "Taxi-v4", typo)


def test_every_field_is_documented():
    docs = field_docs(TabularConfig)
    names = [f.name for f in dataclasses.fields(TabularConfig)]
    assert set(names) == set(docs), set(names) ^ set(docs)
    assert all(len(text) > 10 for text in docs.values())


# ---- the configs' shape: one family base at most ------------------------------------------
def _family_bases(cls: type) -> list[type]:
    from bellman.config import TrainConfig

    return [
        base
        for base in cls.__mro__[1:]
        if dataclasses.is_dataclass(base) and issubclass(base, TrainConfig)
        and base is not TrainConfig
    ]  # fmt: skip


def test_no_config_inherits_more_than_one_family_base():
    """Every registered config is XConfig(FamilyBase) with FamilyBase(TrainConfig) at most: its
    fields come from its own file and at most one other (PPO's came from four)."""
    from bellman import api

    for name, spec in api.ALGORITHMS.items():
        bases = _family_bases(spec.config_class)
        assert len(bases) <= 1, (name, [base.__name__ for base in bases])


def test_the_actor_critic_family_repeats_deep_configs_fields_exactly():
    """ActorCriticConfig (A2C, PPO) repeats DeepConfig's fields (DQN, REINFORCE) instead of
    inheriting them: the same names, types, defaults, ranges, docs and cross-field rules."""
    from bellman.algos.onpolicy import ActorCriticConfig
    from bellman.config import DeepConfig, TrainConfig

    def own(cls):
        inherited = {f.name for f in dataclasses.fields(TrainConfig)}
        docs = field_docs(cls)
        return [(f.name, f.type, f.default, dict(f.metadata), docs[f.name])
                for f in dataclasses.fields(cls) if f.name not in inherited]  # fmt: skip

    deep = own(DeepConfig)
    assert own(ActorCriticConfig)[: len(deep)] == deep
    for cls in (DeepConfig, ActorCriticConfig):
        with pytest.raises(ConfigError, match="stop_when_solved needs evaluations"):
            resolve(cls, "x", "Acrobot-v1", None, ["stop_when_solved=true", "eval_every=0"])
