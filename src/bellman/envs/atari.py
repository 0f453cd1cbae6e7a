"""Atari 2600 games from ale-py, preprocessed the way DeepMind's DQN saw them.

Mnih et al., "Human-level control through deep reinforcement learning", Nature 518 (2015),
Methods, "Preprocessing" and "Training details", describe the function phi and its companions:

    1. Frame skipping: the agent sees and selects an action on every k = 4th frame; its last
       action is repeated on the skipped frames.
    2. Flicker removal: to encode a frame, take the maximum of each pixel over that frame and the
       previous one (sprites that are drawn only on odd or even frames become visible).
    3. Luminance and rescaling: keep the luminance (grey level) only and rescale to 84 x 84.
    4. Stacking: phi applies 1-3 to the m = 4 most recent frames and stacks them, so the network's
       input is 4 x 84 x 84 and it can see motion.
    5. Random starts: each episode starts with up to 30 no-op actions (Nature uses this in
       evaluation; the classic baselines wrappers, and we, use it in training too).
    6. Reward clipping for learning: positive rewards become 1, negative ones -1, 0 stays 0, so one
       learning rate suits every game. Scores are reported unclipped.
    7. Life loss as terminal in training: "the number of lives left ... is then used to mark the
       end of an episode during training"; the game itself goes on.

`make_atari_env` builds, inner to outer (the step that does each item above in brackets):

    gymnasium.make(id, frameskip=1)       the raw emulator, one frame per step, full-colour render
    AtariPreprocessing (gymnasium)        [5] 1-30 no-ops on reset, [1] frame skip 4, [2] max over
                                          the last two frames, [3] grey 84x84 uint8 (cv2 INTER_AREA)
    RecordEpisodeStatistics (gymnasium)   info["episode"] = {"r": raw score of the whole game, all
                                          lives, unclipped; "l": its length in agent steps; "t"}
    EpisodicLifeEnv (ours, training)      [7] a life loss ends the learner's episode; reset() then
                                          continues the same game
    FireResetEnv (ours)                   presses FIRE on reset in games that wait for it (Breakout)
    RawRewardInfo (ours)                  info["raw_reward"] = the unclipped reward of this step
    TransformReward(np.sign) (training)   [6] rewards in {-1, 0, 1}
    FrameStackObservation (gymnasium)     [4] observation [4, 84, 84] uint8, oldest frame first;
                                          after reset the stack is 4 copies of the first frame

With `training=False` (evaluation) the two training-only wrappers are left out: an episode is a
whole game and rewards are the game's score. In both modes `info["episode"]` appears exactly on
the step where the game ends, so it is the one number to report.

FireResetEnv sits outside EpisodicLifeEnv on purpose: after a life loss the learner's `reset()`
takes one no-op step (EpisodicLifeEnv) and then presses FIRE again (FireResetEnv), so Breakout's
next ball is served without the agent having to learn to serve it, as in the baselines wrappers.

Deviations and things to know:
    - ALE v5 ids default to sticky actions (`repeat_action_probability=0.25`, Machado et al.
      2018): with probability 0.25 the emulator repeats the previous action on each frame. Nature
      DQN had none; pass `repeat_action_probability=0.0` to reproduce it.
    - v5 ids use the minimal action set (Nature's choice) and cut a game after 108,000 frames
      (30 minutes), returned as `truncated=True`.
    - The grey level is ALE's own greyscale palette, not the Y channel computed from RGB; the
      resize goes straight from 210x160 to 84x84 (as in the baselines wrappers, no crop).
    - FIRE on reset is not in the paper; it comes from OpenAI baselines' `FireResetEnv`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from bellman.envs import make_env
from bellman.errors import ConfigError

ATARI_PREFIX = "ALE/"

#: The 4 agent steps of frame skipping, DeepMind's k.
FRAME_SKIP = 4
#: DeepMind's 84 x 84 observation.
SCREEN_SIZE = 84


def is_atari(env_id: str) -> bool:
    """True for ale-py's v5 ids such as `ALE/Pong-v5`."""
    return env_id.startswith(ATARI_PREFIX)


def register_atari() -> None:
    """Register ale-py's games with gymnasium (importing ale_py does it; idempotent).

    Kept out of `import bellman` so that only Atari users pay for loading the emulator. Also
    quiets ALE's "A.L.E: Arcade Learning Environment ... [Powered by Stella]" banner on stderr.

    Raises:
        ConfigError: ale-py is not installed.
    """
    try:
        import ale_py
    except ImportError:
        raise ConfigError(
            "Atari environments need the ale-py package (it ships the game ROMs); "
            "install it with `pip install ale-py`"
        ) from None
    gym.register_envs(ale_py)  # a no-op marker: the import above registered the games
    # Keep ALE's warnings and errors but not its banner, which would break one-line CLI errors.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)


def atari_available() -> bool:
    """True when ale-py can be imported (then `ALE/...` ids can be made)."""
    try:
        register_atari()
    except ConfigError:
        return False
    return True


class FireResetEnv(gym.Wrapper):
    """Press FIRE (then action 2) on reset in games that wait for FIRE before they start.

    Breakout serves its ball only after FIRE; without this an agent can spend its first million
    steps learning to press it. If the game (or, under EpisodicLifeEnv, the life) ends during the
    presses, the env is reset and the presses repeated, at most `MAX_ATTEMPTS` times. The reset
    info is updated with the last press's step info, so `info["lives"]` and the frame numbers are
    current. Games whose action meanings have no FIRE are passed through untouched.
    """

    MAX_ATTEMPTS = 10

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.presses: tuple[int, ...] = ()
        if "FIRE" in meanings:
            fire = meanings.index("FIRE")
            # Action 2 as well, like baselines' wrapper: some games need a second input to start.
            self.presses = (fire, 2) if len(meanings) >= 3 else (fire,)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        for _ in range(self.MAX_ATTEMPTS):
            ended = False
            for action in self.presses:
                obs, _, terminated, truncated, step_info = self.env.step(action)
                info = {**info, **step_info}
                if terminated or truncated:
                    ended = True
                    break
            if not ended:
                return obs, info
            obs, info = self.env.reset()
        return obs, info


class EpisodicLifeEnv(gym.Wrapper):
    """End the learner's episode at every life loss; the game itself carries on.

    `step` returns `terminated=True` when the lives counter drops (and the game is not over), so
    the learner does not bootstrap across a lost life. `reset()` after such a life loss does NOT
    restart the game: it takes one no-op step and returns that observation, so the next episode
    starts with one life fewer. Only a real game over (or truncation), or a `reset` with a seed or
    options, resets the emulator.

    Every step's info carries `info["game_over"]`: True only when the game really ended, which is
    also when `info["episode"]` (the raw score of the whole game) appears. `was_real_done` holds
    the same flag for the last step (reach it through wrappers with
    `env.get_wrapper_attr("was_real_done")`). Games without a lives counter (Pong) never lose a
    life, so they pass through unchanged.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.was_real_done = True

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.was_real_done = bool(terminated or truncated)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        info["game_over"] = self.was_real_done
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self.was_real_done or seed is not None or options is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            # A life was lost: continue the same game with one no-op step.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the game ended on that no-op: a real reset after all
                obs, info = self.env.reset()
        self.was_real_done = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class RawRewardInfo(gym.Wrapper):
    """Copy each step's reward, as the game gives it, into `info["raw_reward"]`.

    Sits just inside the reward clipping, so a learner can log the true score step by step.
    """

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = float(reward)
        return obs, reward, terminated, truncated, info


def _validate(
    env_id: str, frame_stack: int, noop_max: int, repeat_action_probability: float | None
) -> None:
    """Raise ConfigError for arguments a user got wrong, naming the value and the rule."""
    if not is_atari(env_id):
        raise ConfigError(
            f"'{env_id}' is not an Atari id; Atari ids look like 'ALE/Pong-v5' or 'ALE/Breakout-v5'"
        )
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
        raise ConfigError(f"frame_stack must be an integer >= 1, got {frame_stack!r}")
    if isinstance(noop_max, bool) or not isinstance(noop_max, int) or noop_max < 0:
        raise ConfigError(f"noop_max must be an integer >= 0, got {noop_max!r}")
    if repeat_action_probability is not None and not 0.0 <= repeat_action_probability <= 1.0:
        raise ConfigError(
            f"repeat_action_probability must be in [0, 1], got {repeat_action_probability!r}"
        )


def make_atari_env(
    env_id: str,
    *,
    training: bool,
    render_mode: str | None = None,
    frame_stack: int = 4,
    noop_max: int = 30,
    repeat_action_probability: float | None = None,
    fire_reset: bool = True,
) -> gym.Env:
    """An ALE game with DeepMind's preprocessing (see the module docstring for the wrapper order).

    Args:
        env_id: an ALE v5 id such as `ALE/Pong-v5`.
        training: True for the learner's env (life loss ends an episode, rewards clipped to their
            sign); False for evaluation (whole games, raw scores).
        render_mode: passed to the emulator; `"rgb_array"` makes `env.render()` return the
            full-colour 210x160x3 screen (for GIFs).
        frame_stack: how many of the most recent frames form an observation (DeepMind's m = 4).
        noop_max: reset takes a uniform random 1..noop_max no-op steps (0: none).
        repeat_action_probability: sticky-action probability; None keeps ale-py's v5 default
            (0.25); 0.0 is Nature DQN's deterministic emulator.
        fire_reset: press FIRE (then action 2) on reset in games that have it (FireResetEnv).

    Returns:
        The wrapped env; observations are uint8 `[frame_stack, 84, 84]`.

    Raises:
        ConfigError: not an ALE id (unknown ids get a "did you mean"), a bad argument, or a
            missing package (ale-py, opencv).
    """
    _validate(env_id, frame_stack, noop_max, repeat_action_probability)
    register_atari()
    kwargs: dict[str, Any] = {"frameskip": 1, "render_mode": render_mode}
    if repeat_action_probability is not None:
        kwargs["repeat_action_probability"] = float(repeat_action_probability)
    env = make_env(env_id, **kwargs)
    try:
        env = gym.wrappers.AtariPreprocessing(
            env,
            noop_max=noop_max,
            frame_skip=FRAME_SKIP,
            screen_size=SCREEN_SIZE,
            grayscale_obs=True,
            terminal_on_life_loss=False,
            scale_obs=False,
        )
    except gym.error.DependencyNotInstalled:
        env.close()
        raise ConfigError(
            "Atari preprocessing needs OpenCV for resizing frames; "
            "install it with `pip install opencv-python-headless`"
        ) from None
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if training:
        env = EpisodicLifeEnv(env)
    if fire_reset:
        env = FireResetEnv(env)
    env = RawRewardInfo(env)
    if training:
        env = gym.wrappers.TransformReward(env, np.sign)
    return gym.wrappers.FrameStackObservation(env, frame_stack, padding_type="reset")
