"""PAL and MAL, the two Stackelberg meta-algorithms of game-theoretic MBRL (seed 003: Alg. 3 "Policy As Leader" and
Alg. 4 "Model As Leader", practical versions; Appendix B, Tables 1-3), with model-based NPG (``agents.npg``) as the
policy player and a probabilistic ensemble (``models.ensemble``) as the model player; and their model-free
counterpart, NPG on the real trajectories alone (``npg``: each iteration collects N samples with the current policy
and takes one NPG step on them; no model), the policy gradient whose asymptote and sample use the paper compares
PAL and MAL with.

    PAL (Alg. 3)                                     MAL (Alg. 4)
    collect N_init real samples with π0 -> D         collect N_init real samples with π0 -> D; fit M0 on D
    each iteration k:                                each iteration k:
      fit the model on D (warm start)                  K ≫ 1 NPG steps in the current model (K = 25)
      K ≈ 1 NPG steps in it (K = 4)                    collect N samples with π_{k+1}; D = D ∪ D_{k+1}
      collect N samples with π_{k+1} into D,           fit the model on all of D (warm start)
      keeping only the newest B rows (B = 2500)

Each NPG step (Subroutine 1) samples ``num_trajectories`` (Nτ = 200) start states and rolls each out H steps
(H = min(env horizon, 500)) ``rollouts_per_start`` times, by default once per ensemble member (MJRL's
``ModelBasedNPG`` rolls the same starts through every model: Nτ·E trajectories), with ``offline_mbrl.rollout.rollout``
(the task's termination function ends a trajectory; rewards are the model's learned rewards, which the paper found
to work as well as the known reward).
Start states (Appendix B, "Policy Details"; MJRL's ``start_state = 'buffer'``): a fraction ``buffer_start_fraction``
(0.5, the paper's choice for the gym tasks) are states of the real data buffer D, the rest are initial states of
real episodes (an "initial state buffer" that keeps the first state of every collected episode, also in PAL).

Choices of this implementation (the paper and MJRL differ or are silent):

* the ensemble is the MBPO/MOPO probabilistic ensemble (Gaussian NLL, learned log-variance bounds, per-member
  bootstrap), sized as the paper: 4 members of MLP(512, 512), all elites, no weight decay; trained with Adam
  (lr 1e-3), mini-batches of 200, ``fit_epochs`` epochs (PAL 100, MAL 10) by ``models.fit.fit`` *from the current
  weights* (the paper's models persist across iterations; ``fit`` makes a fresh Adam and fresh input statistics per
  call). ``fit`` keeps each member's best weights on a holdout of ``holdout_fraction`` (10 %) of the rows; since
  the ensemble learns single transitions, the holdout is drawn over single rows (each row counts as its own episode
  for the split). The paper fits for a fixed number of epochs without a holdout.
* roll-outs sample each step from a random member's Gaussian (``EnsembleStepper``); MJRL keeps one deterministic
  model per trajectory.
* the PAL buffer keeps exactly the newest B rows (MJRL drops whole oldest trajectories while above B).
* the paper's bounds of 10² to 10⁵ gradient steps per model fit (Appendix B, "Model details") are not enforced: a
  fit runs ``fit_epochs`` epochs over the rows it has. At the paper's sizes they hold anyway (PAL: 100 epochs of
  about 11 batches of 200 on the 2250 training rows of B = 2500; MAL: 10 epochs of at least 22 batches, growing
  with D, below 10⁵ steps until D holds about 2.2 million rows); tiny test configs fall below 10².

Randomness: one ``torch.Generator`` on the device drives start states, roll-outs and the value fit; environment
collection, model fits and evaluation are seeded per iteration from ``config.seed`` (``persist.derived_seed`` of the
seed, the iteration and the phase: 0 collect, 1 fit, 2 evaluate), so nothing depends on the global random state.
``state_dict``/``load_state_dict`` (and ``save``/``load``, atomic) hold the whole loop state: policy, value function and
its optimizer, the model, the buffers, counters, records, the iteration in progress (phases done, their metrics) and the
generator, so a loop resumed after any phase (``run`` saves after each fit, NPG step, collection and evaluation)
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from ..agents.npg import NPG, NPGConfig, TrajectoryBatch
from ..checks import check_section
from ..data.dataset import TransitionDataset
from ..envs.gym_env import collect_transitions, env_spaces, evaluate_policy
from ..envs.termination import termination_fn
from ..errors import CheckpointError, ConfigError
from ..models import DynamicsModel, build_model
from ..models.fit import FitConfig, fit
from ..persist import derived_seed, load_checkpoint, save_atomic, seeded
from ..rollout import rollout

ALGOS = ("pal", "mal", "npg")
#: the paper's cap on model roll-outs (Table 1: H = min(env horizon, 500, termination))
MAX_ROLLOUT_LENGTH = 500
#: Table 2 (PAL) and Table 3 (MAL); N is min(factor × env horizon, cap) (Appendix B, gym tasks: 1000 and 3000).
#: Model-free NPG (not in the tables): PAL's N per iteration, one NPG step on them, no initial collection; its
#: buffer is the iteration's N samples (set in ``GameConfig.paper``), its fit settings are not used.
PAPER_SETTINGS = {
    "pal": {"init_samples": 2500, "buffer_size": 2500, "npg_steps": 4, "fit_epochs": 100, "samples": (5, 1000)},
    "mal": {"init_samples": 5000, "buffer_size": None, "npg_steps": 25, "fit_epochs": 10, "samples": (20, 3000)},
    "npg": {"init_samples": 0, "buffer_size": None, "npg_steps": 1, "fit_epochs": 1, "samples": (5, 1000)},
}
_DATA_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts")


@dataclass(frozen=True)
class GameConfig:
    """One PAL or MAL run (Alg. 3 / Alg. 4); ``GameConfig.paper(algo, env_id)`` gives the paper's settings.

    Fields:
        algo: ``"pal"`` (policy as leader), ``"mal"`` (model as leader) or ``"npg"`` (model-free NPG: the model, fit,
            roll-out and start-state fields are not used; ``init_samples`` must be 0 and ``buffer_size`` N).
        env_id: gymnasium id of a task with a termination function (hopper, walker2d, halfcheetah; v5).
        init_samples: N_init real samples collected with the initial policy (PAL 2500, MAL 5000).
        samples_per_iteration: N real samples per iteration (PAL min(5·T, 1000), MAL min(20·T, 3000); T = env
            horizon).
        buffer_size: B, rows of real data the model is fitted on (PAL 2500, the newest; MAL None = all).
        npg_steps: K NPG steps per iteration (PAL 4, MAL 25).
        fit_epochs: model-fit epochs per iteration (PAL 100, MAL 10); fit_batch_size: 200; fit_learning_rate: Adam's
            default 1e-3. holdout_fraction: rows held out to keep each member's best weights (module docstring).
        ensemble_size: models in the ensemble (4); hidden_dims: each an MLP (512, 512).
        num_trajectories: Nτ start states per NPG step (Table 1: 200).
        rollouts_per_start: model trajectories per start state (None: ``ensemble_size``, MJRL's one per model, so
            an NPG step sees Nτ·E trajectories; every step of each computes all E members, so the cost grows with
            E²: 1 gives a quarter of the samples at a quarter of the cost).
        rollout_length: H = min(T, 500) (Table 1).
        buffer_start_fraction: share of start states drawn from the real data (the rest: real initial states).
        eval_episodes: deterministic evaluation episodes after every iteration (0: none).
        collect_envs: environments stepped in lock-step while collecting (``collect_transitions``).
        seed: seeds the networks, the generator and every per-iteration phase.
        npg: the NPG settings (Table 1).

    Raises:
        ConfigError: naming the key: a value below its bound or non-finite, an unknown ``algo``; model-free npg
            with init_samples != 0 or buffer_size != samples_per_iteration, PAL/MAL with init_samples < 1;
            buffer_start_fraction outside [0, 1] or holdout_fraction outside (0, 1); init_samples (or buffer_size)
            too small to hold one holdout row; a hidden width < 1; buffer_size < samples_per_iteration.
    """

    algo: str
    env_id: str
    init_samples: int
    samples_per_iteration: int
    buffer_size: int | None
    npg_steps: int
    fit_epochs: int
    fit_batch_size: int = 200
    fit_learning_rate: float = 1e-3
    holdout_fraction: float = 0.1
    ensemble_size: int = 4
    hidden_dims: tuple[int, ...] = (512, 512)
    num_trajectories: int = 200
    rollouts_per_start: int | None = None
    rollout_length: int = MAX_ROLLOUT_LENGTH
    buffer_start_fraction: float = 0.5
    eval_episodes: int = 10
    collect_envs: int = 1
    seed: int = 0
    npg: NPGConfig = field(default_factory=NPGConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if isinstance(self.npg, dict):
            object.__setattr__(self, "npg", NPGConfig(**self.npg))
        check_section(
            self,
            "",
            at_least={
                "init_samples": 0,
                "samples_per_iteration": 1,
                "buffer_size": 1,
                "npg_steps": 0,
                "fit_epochs": 1,
                "fit_batch_size": 1,
                "ensemble_size": 1,
                "num_trajectories": 1,
                "rollouts_per_start": 1,
                "rollout_length": 1,
                "eval_episodes": 0,
                "collect_envs": 1,
                "seed": 0,
            },
            positive=("fit_learning_rate",),
            choices={"algo": ALGOS},
        )
        if self.algo == "npg":
            if self.init_samples != 0 or self.buffer_size != self.samples_per_iteration:
                raise ConfigError(
                    "config: model-free npg learns from each iteration's own samples: key 'init_samples' must be 0 "
                    f"and 'buffer_size' equal samples_per_iteration, got {self.init_samples} and {self.buffer_size}"
                )
        elif self.init_samples < 1:
            raise ConfigError(f"config: key 'init_samples' must be >= 1 for {self.algo}, got {self.init_samples}")
        if not 0.0 <= self.buffer_start_fraction <= 1.0:
            raise ConfigError(
                f"config: key 'buffer_start_fraction' must be in [0, 1], got {self.buffer_start_fraction!r}"
            )
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"config: key 'holdout_fraction' must be in (0, 1), got {self.holdout_fraction!r}")
        smallest = min(self.init_samples, self.buffer_size or self.init_samples)
        if self.algo != "npg" and int(self.holdout_fraction * smallest) < 1:
            raise ConfigError(
                f"config: key 'init_samples' ({self.init_samples}) leaves no holdout row for the first model fit "
                f"(holdout_fraction {self.holdout_fraction}); collect at least {math.ceil(1 / self.holdout_fraction)}"
            )
        if any(width < 1 for width in self.hidden_dims):
            raise ConfigError(f"config: key 'hidden_dims' must hold widths >= 1, got {self.hidden_dims!r}")
        if self.buffer_size is not None and self.buffer_size < self.samples_per_iteration:
            raise ConfigError(
                f"config: key 'buffer_size' ({self.buffer_size}) must be >= samples_per_iteration "
                f"({self.samples_per_iteration}): the newest collection must fit the buffer"
            )

    @classmethod
    def paper(cls, algo: str, env_id: str = "Hopper-v5", **overrides) -> GameConfig:
        """The paper's settings for ``algo`` on ``env_id`` (Tables 1-3 with the env horizon T from gymnasium's
        registry: N = min(5T, 1000) for PAL and min(20T, 3000) for MAL, H = min(T, 500)), then ``overrides``.

        Raises:
            ConfigError: unknown ``algo``, an env id gymnasium does not know or without a time limit, or a bad
                override (unknown key or value).
        """
        if algo not in PAPER_SETTINGS:
            raise ConfigError(f"config: key 'algo' must be one of {ALGOS}, got {algo!r}")
        try:
            horizon = gym.spec(env_id).max_episode_steps
        except gym.error.Error as exc:
            raise ConfigError(f"env '{env_id}': not a registered gymnasium id ({exc})") from exc
        if horizon is None:
            raise ConfigError(f"env '{env_id}': has no time limit (max_episode_steps); give the settings explicitly")
        settings = dict(PAPER_SETTINGS[algo])
        factor, cap = settings.pop("samples")
        samples = min(factor * horizon, cap)
        if algo == "npg":  # its buffer is the iteration's N samples, also when N is overridden
            settings["buffer_size"] = samples
            overrides = {"buffer_size": overrides.get("samples_per_iteration", samples), **overrides}
        base = cls(
            algo=algo,
            env_id=env_id,
            samples_per_iteration=samples,
            rollout_length=min(horizon, MAX_ROLLOUT_LENGTH),
            **settings,
        )
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"config: unknown key(s) {unknown} for {algo}")
        return replace(base, **overrides)


def _new_partial() -> dict:
    """The state of an iteration before its first phase."""
    return {"phase": 0, "record": {}, "steps": [], "fits": 0}


def aggregate(data: TransitionDataset | None, new: TransitionDataset, buffer_size: int | None) -> TransitionDataset:
    """``data`` followed by ``new``, keeping the newest ``buffer_size`` rows (PAL's small recent buffer, Alg. 3
    line 7) or all of them when ``buffer_size`` is None (MAL's aggregation, Alg. 4 line 7). The first kept episode
    may begin mid-episode (its earlier rows were dropped)."""
    merged = new if data is None else TransitionDataset.concatenate([data, new], source="<pal/mal real data>")
    if buffer_size is not None and len(merged) > buffer_size:
        merged = merged.subset(slice(len(merged) - buffer_size, len(merged)))
    return merged


def real_trajectories(data: TransitionDataset, device: str | torch.device) -> TrajectoryBatch:
    """``data``'s rows as NPG trajectories (model-free NPG): one trajectory per episode (ended by a terminal, a timeout
    or the data end; a non-terminal end is bootstrapped by GAE), ``steps`` counted from each episode's first row.
    Tensors on ``device``: float32 obs (N, D), actions (N, A), rewards (N,), next_obs (N, D); bool terminals."""
    ids = torch.as_tensor(data.episode_ids, device=device)
    first = torch.as_tensor(data.episode_starts, device=device)
    rows = torch.arange(len(data), device=device)

    def floats(x: np.ndarray) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    return TrajectoryBatch(
        floats(data.obs),
        floats(data.actions),
        floats(data.rewards),
        floats(data.next_obs),
        torch.as_tensor(data.terminals, dtype=torch.bool, device=device),
        ids,
        rows - first[ids],
    )


def single_transitions(data: TransitionDataset) -> TransitionDataset:
    """``data`` with every row ending its own episode (timeouts where not terminal), so that ``fit``'s episode
    holdout draws single rows: the ensemble learns single transitions, episode boundaries do not matter to it."""
    return replace(data, timeouts=~data.terminals)


class GameLoop:
    """Runs PAL or MAL (module docstring) as a programmatic API: ``step()`` does one iteration and returns its record,
    ``run(n, checkpoint)`` runs to ``n`` iterations resuming from and saving to ``checkpoint``.

    Args:
        config: ``GameConfig``.
        device: torch device of the networks, the model and the generator.

    Raises:
        ConfigError: the env cannot be built or has non-vector spaces, or (PAL, MAL) has no termination function.
    """

    def __init__(self, config: GameConfig, device: str | torch.device = "cpu") -> None:
        self.config, self.device = config, torch.device(device)
        obs_space, action_space = env_spaces(config.env_id)
        self.obs_dim, self.action_dim = obs_space.shape[0], action_space.shape[0]
        self.model: DynamicsModel | None = None  # model-free NPG has none
        if self.model_based:
            self.termination = termination_fn(config.env_id)
            self._build_model()
        self.npg = NPG(self.obs_dim, self.action_dim, config.npg, self.device, seed=config.seed)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.data: TransitionDataset | None = None  # D: PAL's newest B rows, MAL's aggregate, NPG's newest N
        self.init_states = torch.zeros(0, self.obs_dim, device=self.device)  # first state of every real episode
        self.iteration = 0
        self.env_steps = 0
        self.records: list[dict[str, float]] = []
        self._partial = _new_partial()  # the iteration in progress: phases done, record, NPG-step metrics, fits
        self._data_obs = self.init_states

    @property
    def model_based(self) -> bool:
        """PAL and MAL learn a model; model-free NPG does not."""
        return self.config.algo != "npg"

    def _build_model(self) -> None:
        config = self.config
        with seeded(config.seed, "cpu"):
            self.model = build_model(
                "ensemble",
                self.obs_dim,
                self.action_dim,
                ensemble_size=config.ensemble_size,
                num_elites=config.ensemble_size,
                hidden_dims=config.hidden_dims,
                weight_decays=(0.0,) * (len(config.hidden_dims) + 1),
            )
        self.model.to(self.device)

    # ------------------------------------------------------------------ phases
    def collect(self, num_steps: int) -> dict[str, float]:
        """Collect ``num_steps`` real transitions with the current stochastic policy (``collect_transitions``, seeded
        per iteration) into D (``aggregate`` with ``buffer_size``: Alg. 3 / Alg. 4 line 7) and the initial-state
        buffer (the first state of every new episode).

        Returns:
            ``collect/samples`` (``num_steps``), ``collect/episodes`` (episodes begun, the last one possibly cut by
            the end of the collection) and ``collect/return_mean`` (their mean undiscounted return).
        """
        seed = derived_seed(self.config.seed, self.iteration, 0)
        raw = collect_transitions(
            self.npg.policy.sampler(None), self.config.env_id, num_steps, seed, self.config.collect_envs, self.device
        )
        new = TransitionDataset(
            **{name: getattr(raw, name) for name in _DATA_FIELDS},
            metadata={"env_id": self.config.env_id},
            source=f"<{self.config.algo} collection {self.iteration}>",
        )
        self._set_data(aggregate(self.data, new, self.config.buffer_size))
        starts = torch.as_tensor(new.obs[new.episode_starts], device=self.device)
        self.init_states = torch.cat([self.init_states, starts])
        self.env_steps += len(new)
        returns = new.episode_returns()
        return {
            "collect/samples": float(len(new)),
            "collect/episodes": float(len(returns)),
            "collect/return_mean": float(returns.mean()),
        }

    def _set_data(self, data: TransitionDataset) -> None:
        self.data = data
        self._data_obs = torch.as_tensor(data.obs, device=self.device)

    def fit_model(self) -> dict[str, float]:
        """Fit the ensemble on D from its current weights (Alg. 3 line 5, Alg. 4 lines 4 and 8; ``models.fit.fit``,
        seeded per iteration; the holdout is drawn over single rows, ``single_transitions``).

        Returns:
            ``dynamics/holdout_mse`` (mean over members of the best holdout MSE), ``dynamics/train_loss`` (of the
            last epoch), ``dynamics/epochs`` (epochs run) and ``dynamics/rows`` (rows of D).
        """
        cfg = self.config
        fit_config = FitConfig.for_model(
            self.model,
            batch_size=cfg.fit_batch_size,
            learning_rate=cfg.fit_learning_rate,
            max_epochs=cfg.fit_epochs,
            patience=cfg.fit_epochs,
            holdout_fraction=cfg.holdout_fraction,
            seed=derived_seed(cfg.seed, self.iteration, 1),
        )
        result = fit(self.model, single_transitions(self.data), fit_config)
        return {
            "dynamics/holdout_mse": float(np.mean(result.holdout_errors)),
            "dynamics/train_loss": float(result.history[-1]["train_loss"]),
            "dynamics/epochs": float(result.epochs),
            "dynamics/rows": float(len(self.data)),
        }

    def start_states(self) -> Tensor:
        """Nτ start states (Nτ, D) on the device: ``round(buffer_start_fraction · Nτ)`` drawn uniformly from D's
        states, the rest from the initial-state buffer (with replacement, from the generator)."""
        n = self.config.num_trajectories
        from_data = round(self.config.buffer_start_fraction * n)
        pools = ((self._data_obs, from_data), (self.init_states, n - from_data))
        picks = [
            pool[torch.randint(len(pool), (count,), generator=self.generator, device=self.device)]
            for pool, count in pools
            if count > 0
        ]
        return torch.cat(picks)

    def npg_step(self) -> dict[str, float]:
        """One model-based NPG update (Subroutine 1): Nτ starts, each rolled out ``rollouts_per_start`` times (default:
        once per ensemble member) for H steps in the model with the termination function, then ``NPG.update``.
        Model-free NPG: ``NPG.update`` on the iteration's real samples (:func:`real_trajectories`).

        Returns:
            ``NPG.update``'s metrics and (PAL, MAL) the roll-out's ``rollout/`` statistics.

        Raises:
            DivergenceError: non-finite model rewards or a non-finite NPG step (``NPG.update``).
        """
        if not self.model_based:
            return self.npg.update(real_trajectories(self.data, self.device), self.generator)
        copies = self.config.rollouts_per_start or self.config.ensemble_size
        starts = self.start_states().repeat_interleave(copies, dim=0)  # (Nτ·copies, D)
        result = rollout(
            self.model,
            self.npg.policy.sampler(self.generator),
            starts,
            self.config.rollout_length,
            termination=self.termination,
            generator=self.generator,
        )
        batch = TrajectoryBatch(
            result.obs,
            result.actions,
            result.rewards,
            result.next_obs,
            result.terminals,
            result.start_ids,
            result.steps,
        )
        return {**self.npg.update(batch, self.generator), **result.stats}

    def evaluate(self) -> dict[str, float]:
        """Mean and std of the undiscounted return of ``eval_episodes`` episodes with the mean action (NaN if none)."""
        if self.config.eval_episodes == 0:
            return {"eval/return_mean": float("nan"), "eval/return_std": float("nan")}
        returns = evaluate_policy(
            self.npg.policy.deterministic(),
            self.config.env_id,
            self.config.eval_episodes,
            seed=derived_seed(self.config.seed, self.iteration, 2) % 2**31,
            device=self.device,
        )
        return {"eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std())}

    # ------------------------------------------------------------------ one iteration
    def phases(self) -> list[str]:
        """This iteration's phases in order: Alg. 3 (PAL: ``fit``, K × ``npg``, ``collect``) or Alg. 4 (MAL: K ×
        ``npg``, ``collect``, ``fit``), then ``eval``; iteration 0 begins with ``collect_init`` (N_init samples of
        π0) and, for MAL, the fit of M0 (Alg. 4 line 4). Model-free NPG: ``collect`` (N samples of the current
        policy), ``npg`` on them, ``eval``."""
        if not self.model_based:
            return ["collect", *["npg"] * self.config.npg_steps, "eval"]
        pal, mal = self.config.algo == "pal", self.config.algo == "mal"
        first = (["collect_init"] + ["fit"] * mal) if self.iteration == 0 else []
        return [*first, *["fit"] * pal, *["npg"] * self.config.npg_steps, "collect", *["fit"] * mal, "eval"]

    def _run_phase(self, name: str) -> None:
        """Run one phase of :meth:`phases` and add its outcome to the iteration in progress."""
        partial = self._partial
        start = time.perf_counter()
        if name == "collect_init":
            initial = self.collect(self.config.init_samples)
            partial["record"].update({k.replace("collect/", "collect/init_"): v for k, v in initial.items()})
        elif name == "fit":
            partial["record"].update(self.fit_model())
            partial["fits"] += 1
        elif name == "npg":
            partial["steps"].append(self.npg_step())
        elif name == "collect":
            partial["record"].update(self.collect(self.config.samples_per_iteration))
        else:
            partial["record"].update(self.evaluate())
        key = "time/" + ("collect" if name == "collect_init" else name)
        partial["record"][key] = partial["record"].get(key, 0.0) + time.perf_counter() - start
        partial["phase"] += 1

    def step(self, after_phase: Callable[[], None] | None = None) -> dict[str, float]:
        """Finish the current iteration (all of :meth:`phases`, or those left by a checkpoint taken mid-iteration)
        and return its record; ``after_phase()`` is called after every phase but the last (e.g. to checkpoint).

        Returns:
            the iteration's record: ``iteration``, ``env_steps`` (real samples so far), ``dynamics/fits`` and
            ``npg/steps`` (counts this iteration), the fit's ``dynamics/`` metrics (of the last fit), the NPG metrics
            averaged over the K steps (``npg/kl``, ``npg/surrogate_improvement``, … and ``npg/kl_max``),
            ``rollout/`` statistics, ``collect/`` (this iteration's N samples; iteration 0 also ``collect/init_*`` of
            the N_init samples of π0) and ``eval/`` returns, ``time/`` seconds per phase (``collect``, ``fit``,
            ``npg``, ``eval``).
        """
        phases = self.phases()
        while self._partial["phase"] < len(phases):
            self._run_phase(phases[self._partial["phase"]])
            if after_phase is not None and self._partial["phase"] < len(phases):
                after_phase()
        record, steps = self._partial["record"], self._partial["steps"]
        if steps:
            record.update({key: float(np.mean([s[key] for s in steps])) for key in steps[0]})
            record["npg/kl_max"] = float(max(s["npg/kl"] for s in steps))
        self.iteration += 1
        record.update(
            {
                "iteration": float(self.iteration),
                "env_steps": float(self.env_steps),
                "dynamics/fits": float(self._partial["fits"]),
                "npg/steps": float(len(steps)),
                "data/rows": float(len(self.data)),
                "data/init_states": float(len(self.init_states)),
            }
        )
        self.records.append(record)
        self._partial = _new_partial()
        return record

    def run(self, iterations: int, checkpoint: str | Path | None = None) -> list[dict[str, float]]:
        """Run until ``iterations`` iterations are done; with ``checkpoint``, resume from it if it exists and save
        it (atomically) after every phase (every fit, NPG step, collection and evaluation), so a stopped run loses
        at most one phase. Returns all records.

        Raises:
            ConfigError: ``iterations`` < 0.
            CheckpointError: the checkpoint cannot be read or was made with another config.
        """
        if iterations < 0:
            raise ConfigError(f"{self.config.algo}: 'iterations' must be >= 0, got {iterations}")
        if checkpoint is not None and Path(checkpoint).is_file():
            self.load(checkpoint)
        save = None if checkpoint is None else (lambda: self.save(checkpoint))
        while self.iteration < iterations:
            self.step(after_phase=save)
            if save is not None:
                save()
        return self.records

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed loop needs (``torch.load(weights_only=True)``-safe): config, NPG state (policy,
        value function, its optimizer), the model, D and the initial-state buffer, counters, records, the iteration in
        progress and the generator."""
        data = None if self.data is None else {name: torch.as_tensor(getattr(self.data, name)) for name in _DATA_FIELDS}
        return {
            "config": asdict(self.config),
            "npg": self.npg.state_dict(),
            "model": None if self.model is None else self.model.state_dict(),
            "data": data,
            "init_states": self.init_states.cpu(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "records": list(self.records),
            "partial": self._partial,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`.

        Raises:
            CheckpointError: the state was made with another config (names the differing keys).
        """
        try:
            saved = GameConfig(**state["config"])
        except (KeyError, TypeError, ConfigError) as exc:
            raise CheckpointError(f"{self.config.algo}: the checkpoint's config cannot be read ({exc})") from exc
        differing = [
            f.name for f in dataclasses.fields(GameConfig) if getattr(saved, f.name) != getattr(self.config, f.name)
        ]
        if differing:
            raise CheckpointError(f"{self.config.algo}: checkpoint made with other values of {differing}")
        self.npg.load_state_dict(state["npg"])
        if self.model is not None:
            self.model.load_state_dict(state["model"])
        if state["data"] is not None:
            self._set_data(
                TransitionDataset(
                    **{name: state["data"][name].numpy() for name in _DATA_FIELDS},
                    metadata={"env_id": self.config.env_id},
                    source=f"<{self.config.algo} real data>",
                )
            )
        self.init_states = state["init_states"].to(self.device)
        self.iteration, self.env_steps = int(state["iteration"]), int(state["env_steps"])
        self.records = list(state["records"])
        self._partial = state["partial"]
        self.generator.set_state(state["generator"].cpu())

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` atomically to ``path``."""
        save_atomic(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save` (``persist.load_checkpoint``, weights only).

        Raises:
            CheckpointError: unreadable, or made with another config.
        """
        self.load_state_dict(load_checkpoint(path, self.device))
