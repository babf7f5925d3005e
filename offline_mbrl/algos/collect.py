"""D4RL-style dataset collection on gymnasium MuJoCo v5 (DESIGN section 3, REFERENCE-datasets 1).

After an online SAC run (:mod:`offline_mbrl.algos.online_sac`):

- ``random``: uniform random actions;
- ``medium``: the first evaluation snapshot whose deterministic return reaches
  ``medium_fraction`` (default 1/3) of the expert return, rolled out stochastically;
- ``medium-replay``: every replay-buffer row collected before that snapshot, in collection
  order, with its ``collection_step``;
- ``expert``: the final policy, rolled out stochastically;
- ``medium-expert``: medium followed by expert.

Reference returns: ``ref_min_score`` = mean return of the uniform random policy, ``ref_max_score`` =
mean deterministic return of the expert policy, each over ``ref_episodes`` (>= 10) episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..agents.sac import TanhGaussianActor, load_actor
from ..buffers import ordered_rows, state_from_rows
from ..data.dataset import TransitionDataset
from ..envs.gym_env import Policy, collect_transitions, evaluate_policy, make_env
from ..errors import DatasetError
from .online_sac import buffer_fields

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")


def env_short_name(env_id: str) -> str:
    """``Hopper-v5`` -> ``hopper`` (the dataset-id namespace part)."""
    return env_id.split("-v")[0].lower()


def stochastic(actor: TanhGaussianActor) -> Policy:
    """The actor as a sampling policy ``(B, D) -> (B, A)``."""
    return lambda obs: actor(obs, with_log_prob=False)[0]


def deterministic(actor: TanhGaussianActor) -> Policy:
    """The actor's mean action ``tanh(mu)`` as a policy ``(B, D) -> (B, A)``."""
    return lambda obs: actor(obs, deterministic=True)[0]


def random_policy(env_id: str, seed: int = 0) -> Policy:
    """Uniform random actions in the environment's action box, seeded, as a batched policy."""
    space = make_env(env_id).action_space
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    gen = torch.Generator().manual_seed(seed)
    return lambda obs: (low + (high - low) * torch.rand(len(obs), len(low), generator=gen)).to(obs.device)


@dataclass(frozen=True)
class ReferenceReturns:
    """Mean undiscounted returns of the random and the expert policy (normalization 0 and 100)."""

    random: float
    expert: float


def reference_returns(env_id: str, expert: TanhGaussianActor, episodes: int = 10, seed: int = 0) -> ReferenceReturns:
    """Measure :class:`ReferenceReturns` over ``episodes`` (>= 10) episodes each."""
    if episodes < 10:
        raise ValueError(f"reference_returns: need at least 10 episodes, got {episodes}")
    rand = evaluate_policy(random_policy(env_id, seed), env_id, episodes, seed=seed)
    exp = evaluate_policy(deterministic(expert), env_id, episodes, seed=seed)
    return ReferenceReturns(float(rand.mean()), float(exp.mean()))


def medium_snapshot(run_dir: str | Path, target_return: float) -> tuple[int, Path]:
    """First evaluation step of an online SAC run whose mean return reaches ``target_return``.

    Reads ``run_dir/metrics.csv``; returns ``(step, snapshot path)``.

    Raises:
        DatasetError: no evaluation reached the target.
    """
    metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
    hits = metrics[metrics["eval/return_mean"] >= target_return]
    if hits.empty:
        raise DatasetError(
            f"{run_dir}/metrics.csv: no evaluation reached the medium target return "
            f"{target_return:.1f} (best {metrics['eval/return_mean'].max():.1f})"
        )
    step = int(hits["step"].iloc[0])
    return step, Path(run_dir) / "snapshots" / f"actor_{step:08d}.pt"


def replay_dataset(rows: dict[str, np.ndarray], env_id: str, upto_step: int | None = None) -> TransitionDataset:
    """The replay buffer (oldest first) as a dataset, keeping rows with ``collection_step < upto_step``.

    The prefix usually stops mid-episode: its last row is then flagged ``timeout`` (the collection
    budget acts as a time limit; D4RL's replay files end the same way).
    """
    keep = slice(None) if upto_step is None else rows["collection_step"] < upto_step
    data = {k: np.asarray(v)[keep] for k, v in rows.items()}
    timeouts = data["timeouts"].copy()
    timeouts[-1] |= not data["terminals"][-1]
    return TransitionDataset(
        obs=data["obs"],
        actions=data["actions"],
        rewards=data["rewards"],
        next_obs=data["next_obs"],
        terminals=data["terminals"],
        timeouts=timeouts,
        qpos=data["qpos"],
        qvel=data["qvel"],
        collection_step=data["collection_step"],
        metadata={"env_id": env_id},
        source=f"<{env_id} SAC replay buffer>",
    )


# ------------------------------------------------------------------------------ compact replay file
def obs_from_state(env_id: str, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Gymnasium v5 locomotion observation from the simulator state, ``(N, nq), (N, nv) -> (N, D)``.

    ``obs = [qpos[1:], qvel]`` with joint velocities clipped to +-10 for Hopper and Walker2d
    (REFERENCE-datasets 4.1); the root x (qpos[0]) is excluded.
    """
    qvel = np.clip(qvel, -10.0, 10.0) if env_short_name(env_id) in ("hopper", "walker2d") else qvel
    return np.concatenate([qpos[:, 1:], qvel], axis=1).astype(np.float32)


def save_replay_file(dataset: TransitionDataset, env_id: str, path: str | Path) -> None:
    """Write a replay dataset compactly (``np.savez_compressed``): simulator states, actions, rewards,
    flags, collection steps, and the ``next_obs`` of each episode's last row; observations are rebuilt
    from the states on load. The rebuild is checked to be exact before anything is written.

    Raises:
        DatasetError: observations are not an exact function of the stored states.
    """
    ends = dataset.episode_ends
    if not np.array_equal(obs_from_state(env_id, dataset.qpos, dataset.qvel), dataset.obs):
        raise DatasetError(f"{path}: observations cannot be rebuilt exactly from qpos/qvel for {env_id}")
    np.savez_compressed(
        path,
        env_id=env_id,
        qpos=dataset.qpos,
        qvel=dataset.qvel,
        actions=dataset.actions,
        rewards=dataset.rewards,
        terminals=dataset.terminals,
        timeouts=dataset.timeouts,
        collection_step=dataset.collection_step,
        end_next_obs=dataset.next_obs[ends],
    )


def load_replay_file(path: str | Path, upto_step: int | None = None) -> TransitionDataset:
    """Inverse of :func:`save_replay_file`, optionally keeping rows collected before ``upto_step``."""
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    env_id = str(data.pop("env_id"))
    obs = obs_from_state(env_id, data["qpos"], data["qvel"])
    ends = data["terminals"] | data["timeouts"]
    ends[-1] = True
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[ends] = data.pop("end_next_obs")
    rows = {**data, "obs": obs, "next_obs": next_obs}
    return replace(replay_dataset(rows, env_id, upto_step), source=str(path))


# ------------------------------------------------------------------------------ kinds from policies
def collect_kind(
    kind: str,
    env_id: str,
    num_steps: int,
    seed: int,
    medium: TanhGaussianActor | None = None,
    expert: TanhGaussianActor | None = None,
) -> TransitionDataset:
    """Collect ``random``, ``medium``, ``expert`` or ``medium-expert`` (half medium, half expert rows)."""
    if kind == "random":
        return collect_transitions(None, env_id, num_steps, seed)
    if kind in ("medium", "expert"):
        actor = medium if kind == "medium" else expert
        if actor is None:
            raise DatasetError(f"collect '{kind}': no {kind} policy given")
        return collect_transitions(stochastic(actor), env_id, num_steps, seed)
    if kind == "medium-expert":
        half = num_steps // 2
        parts = [
            collect_kind("medium", env_id, half, seed, medium, expert),
            collect_kind("expert", env_id, num_steps - half, seed + 1, medium, expert),
        ]
        return TransitionDataset.concatenate(parts, source=f"<collected {env_id} medium-expert>")
    raise DatasetError(f"collect: unknown dataset kind '{kind}' (known: {', '.join(KINDS)})")


# ------------------------------------------------------------------------------ whole collection
def dataset_id(env_id: str, kind: str, version: int = 0) -> str:
    """Minari id in the project's namespace: ``offline_mbrl/hopper/medium-v0``."""
    return f"offline_mbrl/{env_short_name(env_id)}/{kind}-v{version}"


def expert_from_checkpoint(run_dir: str | Path) -> TanhGaussianActor:
    """The final actor of an online SAC run, read from its ``checkpoint.pt``."""
    from ..persist import load_checkpoint

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    sac = state["sac"]
    weights = {k[len("actor.") :]: v for k, v in sac["model"].items() if k.startswith("actor.")}
    actor = TanhGaussianActor(int(sac["obs_dim"]), int(sac["action_dim"]), tuple(sac["config"]["hidden_dims"]))
    actor.load_state_dict(weights)
    return actor.eval()


def write_dataset(
    dataset: TransitionDataset,
    ds_id: str,
    env_id: str,
    kind: str,
    refs: ReferenceReturns,
    hdf5_dir: str | Path | None = None,
    overwrite: bool = False,
) -> str:
    """Write ``dataset`` as the Minari dataset ``ds_id`` (and optionally a D4RL hdf5); returns ``ds_id``."""
    from ..data.d4rl import write_d4rl
    from ..data.minari_io import write_minari

    write_minari(
        dataset,
        ds_id,
        env_id=env_id,
        ref_min_score=refs.random,
        ref_max_score=refs.expert,
        description=f"D4RL-style '{kind}' data collected by offline_mbrl on {env_id}",
        algorithm_name="SAC (offline_mbrl)",
        overwrite=overwrite,
    )
    if hdf5_dir is not None:
        Path(hdf5_dir).mkdir(parents=True, exist_ok=True)
        write_d4rl(dataset, Path(hdf5_dir) / f"{env_short_name(env_id)}_{kind.replace('-', '_')}-v0.hdf5")
    return ds_id


def collect_all(
    run_dir: str | Path,
    out_dir: str | Path,
    env_id: str,
    kinds: tuple[str, ...] = KINDS,
    num_steps: int = 100_000,
    seed: int = 0,
    medium_fraction: float = 1 / 3,
    ref_episodes: int = 10,
    hdf5: bool = False,
    overwrite: bool = False,
    end_step: int | None = None,
) -> dict:
    """Produce the D4RL kinds from a finished online SAC run and ship its artefacts to ``out_dir``.

    ``end_step`` (an evaluation step of the run) is taken as the end of training: its snapshot is the expert
    and the replay file stops there; default: the final policy of ``checkpoint.pt`` and the whole buffer.
    Writes ``out_dir/policies/<env>_{medium,expert}.pt``, ``out_dir/<env>_replay.npz`` (the replay buffer,
    compact) and returns a recipe dictionary (one entry per kind, the form of ``datasets/recipes.yaml``)
    with the measured returns.
    """
    from ..data.scores import normalized_score
    from ..persist import load_checkpoint, save_atomic

    out_dir, short = Path(out_dir), env_short_name(env_id)
    buffer_state = load_checkpoint(Path(run_dir) / "checkpoint.pt")["buffer"]
    buffer_rows = {k: v.numpy() for k, v in ordered_rows(buffer_state).items()}
    collected = int(buffer_rows["collection_step"][-1]) + 1
    if end_step is not None and end_step > collected:
        raise DatasetError(f"{run_dir}/checkpoint.pt: holds {collected} steps, fewer than end_step {end_step}")
    expert = (
        expert_from_checkpoint(run_dir)
        if end_step is None
        else load_actor(Path(run_dir) / "snapshots" / f"actor_{end_step:08d}.pt")
    )
    refs = reference_returns(env_id, expert, ref_episodes, seed)
    medium_step, medium_path = medium_snapshot(run_dir, medium_fraction * refs.expert)
    medium = load_actor(medium_path)
    (out_dir / "policies").mkdir(parents=True, exist_ok=True)
    save_atomic(load_checkpoint(medium_path), out_dir / "policies" / f"{short}_medium.pt")
    save_atomic(expert.file_state(), out_dir / "policies" / f"{short}_expert.pt")
    save_replay_file(replay_dataset(buffer_rows, env_id, end_step), env_id, out_dir / f"{short}_replay.npz")

    recipes, hdf5_dir = {}, (out_dir / "hdf5" if hdf5 else None)
    medium_return = float(evaluate_policy(deterministic(medium), env_id, ref_episodes, seed=seed).mean())
    for kind in kinds:
        data = (
            replay_dataset(buffer_rows, env_id, medium_step)
            if kind == "medium-replay"
            else collect_kind(kind, env_id, num_steps, seed, medium, expert)
        )
        write_dataset(data, dataset_id(env_id, kind), env_id, kind, refs, hdf5_dir, overwrite)
        mean_return = float(data.episode_returns().mean())
        recipes[f"{short}-{kind}"] = {
            "env_id": env_id,
            "kind": kind,
            "dataset_id": dataset_id(env_id, kind),
            "seed": seed,
            "num_steps": len(data),
            "ref_min_score": refs.random,
            "ref_max_score": refs.expert,
            "dataset_return_mean": mean_return,
            "d4rl_normalized_return": float(normalized_score(f"{short}-{kind}", mean_return)),
            **_recipe_sources(kind, short, medium_step),
        }
    recipes[f"_{short}"] = {
        "env_id": env_id,
        "random_return": refs.random,
        "expert_return": refs.expert,
        "medium_return": medium_return,
        "medium_step": medium_step,
        "expert_step": collected if end_step is None else end_step,
    }
    return recipes


def _recipe_sources(kind: str, short: str, medium_step: int) -> dict:
    if kind == "medium-replay":
        return {"replay": f"{short}_replay.npz", "upto_step": medium_step}
    policies = {"random": [], "medium": ["medium"], "expert": ["expert"], "medium-expert": ["medium", "expert"]}[kind]
    return {"policies": {p: f"policies/{short}_{p}.pt" for p in policies}}


def check_recipe(recipe: dict, recipes_dir: Path, overwrite: bool = False) -> None:
    """Check a recipe before any work: a mapping with ``env_id``, a known ``kind``, a valid ``dataset_id``
    (inside the Minari root, :func:`~offline_mbrl.data.minari_io.dataset_path`), numeric reference scores, and the
    files it reads (``policies`` or ``replay``) present under ``recipes_dir``; the dataset must not exist unless
    ``overwrite``.

    Raises:
        DatasetError: naming the recipe's dataset id (or the recipe) and the field.
    """
    from ..data.minari_io import dataset_path

    where = f"recipe {recipe.get('dataset_id', '?') if isinstance(recipe, dict) else recipe!r}"
    if not isinstance(recipe, dict):
        raise DatasetError(f"{where}: a recipe must be a mapping")
    if recipe.get("kind") not in KINDS:
        raise DatasetError(f"{where}: field 'kind' must be one of {KINDS}, got {recipe.get('kind')!r}")
    needed = ("env_id", "dataset_id", "ref_min_score", "ref_max_score")
    needed += ("replay", "upto_step") if recipe["kind"] == "medium-replay" else ("num_steps", "seed")
    missing = [key for key in needed if key not in recipe]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {missing}")
    for key in ("ref_min_score", "ref_max_score"):
        if isinstance(recipe[key], bool) or not isinstance(recipe[key], (int, float)) or not np.isfinite(recipe[key]):
            raise DatasetError(f"{where}: field '{key}' must be a finite number, got {recipe[key]!r}")
    path = dataset_path(recipe["dataset_id"])
    files = [recipe["replay"]] if recipe["kind"] == "medium-replay" else list((recipe.get("policies") or {}).values())
    absent = [f for f in files if not (recipes_dir / f).is_file()]
    if absent:
        raise DatasetError(f"{where}: file(s) {absent} not found under {recipes_dir}")
    if path.exists() and not overwrite:
        raise DatasetError(
            f"minari:{recipe['dataset_id']}: a Minari dataset already exists at {path}; pass --overwrite to replace it"
        )


def make_from_recipe(
    recipe: dict,
    recipes_dir: str | Path,
    num_steps: int | None = None,
    seed: int | None = None,
    overwrite: bool = False,
) -> tuple[str, TransitionDataset]:
    """Regenerate a dataset from a recipe of ``datasets/recipes.yaml`` (shipped policies or replay file)
    and write it as its Minari dataset. Returns ``(dataset_id, dataset)``.

    Raises:
        DatasetError: before any collection (:func:`check_recipe`): a malformed recipe, a bad dataset id, a missing
            policy or replay file, or an existing dataset without ``overwrite``.
    """
    recipes_dir = Path(recipes_dir)
    check_recipe(recipe, recipes_dir, overwrite)
    env_id, kind = recipe["env_id"], recipe["kind"]
    if kind == "medium-replay":
        data = load_replay_file(recipes_dir / recipe["replay"], upto_step=int(recipe["upto_step"]))
    else:
        actors = {name: load_actor(recipes_dir / path) for name, path in recipe.get("policies", {}).items()}
        data = collect_kind(
            kind,
            env_id,
            num_steps or int(recipe["num_steps"]),
            int(recipe["seed"] if seed is None else seed),
            actors.get("medium"),
            actors.get("expert"),
        )
    refs = ReferenceReturns(float(recipe["ref_min_score"]), float(recipe["ref_max_score"]))
    return write_dataset(data, recipe["dataset_id"], env_id, kind, refs, overwrite=overwrite), data


# ------------------------------------------------------------------------------ portable training state
def export_training(run_dir: str | Path, out_dir: str | Path, env_id: str) -> None:
    """A compact, portable copy of an online SAC run (to resume it on another machine): the checkpoint
    without its replay buffer (``sac_state.pt``), the buffer as a compact replay file (``replay.npz``, see
    :func:`save_replay_file`), ``metrics.csv`` and the evaluation ``snapshots/``."""
    import shutil

    from ..persist import load_checkpoint, save_atomic

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    rows = {k: v.numpy() for k, v in ordered_rows(state.pop("buffer")).items()}
    save_replay_file(replay_dataset(rows, env_id), env_id, out_dir / "replay.npz")
    save_atomic(state, out_dir / "sac_state.pt")
    shutil.copy2(run_dir / "metrics.csv", out_dir / "metrics.csv")
    shutil.copytree(run_dir / "snapshots", out_dir / "snapshots", dirs_exist_ok=True)


def import_training(bundle_dir: str | Path, run_dir: str | Path) -> None:
    """Inverse of :func:`export_training`: rebuild ``run_dir/checkpoint.pt`` (buffer included), ``metrics.csv``
    and ``snapshots/``, so that ``OnlineSACTrainer(..., run_dir).train()`` resumes the run."""
    import shutil

    from ..persist import load_checkpoint, save_atomic

    bundle_dir, run_dir = Path(bundle_dir), Path(run_dir)
    state = load_checkpoint(bundle_dir / "sac_state.pt")
    data = load_replay_file(bundle_dir / "replay.npz")
    fields = buffer_fields(data.obs_dim, data.action_dim, data.qpos.shape[1], data.qvel.shape[1])
    state["buffer"] = state_from_rows({k: torch.as_tensor(getattr(data, k)) for k in fields})
    save_atomic(state, run_dir / "checkpoint.pt")
    shutil.copy2(bundle_dir / "metrics.csv", run_dir / "metrics.csv")
    shutil.copytree(bundle_dir / "snapshots", run_dir / "snapshots", dirs_exist_ok=True)
