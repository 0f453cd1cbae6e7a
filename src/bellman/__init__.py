"""bellman: deep reinforcement learning from the Q-table to DQN, PPO, AlphaZero and RLHF.

The public API:
    bellman.train(algo, env_id, ...)     train in a new run directory (see `bellman.api`)
    bellman.resume(run_dir)              continue a run exactly where it stopped
    bellman.load_policy(run_dir)         the greedy policy of a run's latest checkpoint
    bellman.evaluate_run(run_dir, ...)   seeded evaluation, writes eval.json
    bellman.make_env(env_id)             gymnasium.make with clear errors; registers bellman/ envs
"""

__all__ = ["ALGORITHMS", "evaluate_run", "load_policy", "make_env", "resume", "train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """The public API, imported on first use (PEP 562): `python -m bellman` then starts with
    nothing imported, and sets up its Ctrl-C handling before numpy and torch load."""
    if name == "make_env":
        from bellman.envs import make_env

        return make_env
    if name in __all__:
        import bellman.api

        return getattr(bellman.api, name)
    raise AttributeError(f"module 'bellman' has no attribute '{name}'")
