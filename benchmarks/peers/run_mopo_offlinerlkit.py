"""OfflineRL-Kit's MOPO (github.com/yihaosun1124/OfflineRL-Kit, ``run_example/run_mopo.py``) on one of our datasets
at our budget, written as one of our run folders (``config.yaml``, ``metrics.csv``, ``summary.json``).

    OFFLINERL_KIT_PATH=/work/peers-src/OfflineRL-Kit PYTHONPATH=. OMP_NUM_THREADS=1 \\
        python benchmarks/peers/run_mopo_offlinerlkit.py --dataset minari:offline_mbrl/hopper/medium-v0 \\
        --seed 0 --epochs 200 --rollout-batch-size 5000 --out RUN_DIR [--resume]

Taken from the peer unchanged: ``run_mopo.py``'s argument defaults and the rollout length and penalty it suggests
for the task (its docstring), its ``qlearning_dataset`` conversion, its networks, ``EnsembleDynamics`` with its
fit and early stopping, ``MOPOPolicy`` and ``MBPolicyTrainer`` (roll-outs, SAC updates, evaluation loop), the
hopper termination function. ``build`` wires these classes as ``run_mopo.train`` does (the script cannot be called
as is: it makes a D4RL env and ties the lr cosine to the run length).
Adapted at the boundary (see README.md): the dataset and the gymnasium environment (old gym API), the budget
flags, the actor-lr cosine period (``--lr-schedule-epochs``), the output format, and the harness checkpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one line per epoch instead of bars

import importlib.util
import random
import re
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium
import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_harness import (
    OldGymEnv,
    PeerSetupError,
    RunFolder,
    buffer_state,
    load_buffer_state,
    load_peer_dataset,
    peer_commit,
    peer_root,
    peer_task,
    run_main,
    stub_module,
)

ALGO = "mopo-offlinerlkit"
REPO = "https://github.com/yihaosun1124/OfflineRL-Kit"
FULL_EPOCHS = 3000  # run_mopo.py --epoch default: the period of its actor-lr cosine
SCRIPT = Path("run_example") / "run_mopo.py"
BUFFER_ARRAYS = ["observations", "next_observations", "actions", "rewards", "terminals"]
BUFFER_COUNTERS = ["_ptr", "_size"]
OPTIMS = ["actor_optim", "critic1_optim", "critic2_optim"]
TRAIN_KEYS = {
    "loss/actor": "train/actor_loss",
    "loss/critic1": "train/critic1_loss",
    "loss/critic2": "train/critic2_loss",
    "loss/alpha": "train/alpha_loss",
    "alpha": "train/alpha",
    "rollout_info/reward_mean": "rollout/mean_reward",
    "rollout_info/num_transitions": "rollout/transitions",
}


def suggested(root: Path, task: str) -> list[str]:
    """``--rollout-length``/``--penalty-coef`` for ``task`` from the "suggested hypers" list in run_mopo.py.

    Raises:
        PeerSetupError: the script lists no setting for ``task``.
    """
    text = (root / SCRIPT).read_text()
    match = re.search(rf"^{re.escape(task)}-v2: rollout-length=(\d+), penalty-coef=([0-9.]+)", text, re.MULTILINE)
    if match is None:
        raise PeerSetupError(f"{root / SCRIPT}: no suggested hypers for '{task}-v2' (--peer-config)")
    return ["--rollout-length", match.group(1), "--penalty-coef", match.group(2)]


def peer_args(root: Path, task: str, args) -> SimpleNamespace:
    """run_mopo.py's own argument namespace for ``task`` (its defaults and suggested hypers), then our budget.

    The peer imports ``gym`` (for type hints, and ``gym.envs.mujoco.mujoco_env`` for an oracle model never used
    here) and ``d4rl`` (never called here): stubs stand in for them, with gymnasium's ``Env`` and ``spaces`` for
    the type hints, so that no old gym/d4rl/mujoco-py is needed.
    """
    stub_module("gym", Env=gymnasium.Env, spaces=gymnasium.spaces)
    stub_module("gym.envs")
    stub_module("gym.envs.mujoco", mujoco_env=stub_module("gym.envs.mujoco.mujoco_env", MujocoEnv=object))
    stub_module("d4rl")
    argv = ["run_mopo.py", "--task", f"{task}-v2", *suggested(root, task), "--seed", str(args.seed)]
    saved_argv = sys.argv
    sys.argv = argv
    try:
        spec = importlib.util.spec_from_file_location("peer_run_mopo", root / SCRIPT)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        pargs = script.get_args()
    finally:
        sys.argv = saved_argv
    pargs.epoch, pargs.step_per_epoch, pargs.eval_episodes = args.epochs, args.steps_per_epoch, args.eval_episodes
    pargs.rollout_batch_size, pargs.model_retain_epochs = args.rollout_batch_size, args.model_retain_epochs
    pargs.device, pargs.peer_argv = args.device, argv[1:]
    return pargs


def build(pargs, env: OldGymEnv, run: RunFolder) -> SimpleNamespace:
    """The objects ``run_mopo.train`` builds, in its order (dataset, seeding, networks, dynamics, policy, buffers),
    except that the actor-lr cosine runs over ``--lr-schedule-epochs``."""
    from offlinerlkit.buffer import ReplayBuffer
    from offlinerlkit.dynamics import EnsembleDynamics
    from offlinerlkit.modules import ActorProb, Critic, EnsembleDynamicsModel, TanhDiagGaussian
    from offlinerlkit.nets import MLP
    from offlinerlkit.policy import MOPOPolicy
    from offlinerlkit.utils.load_dataset import qlearning_dataset
    from offlinerlkit.utils.scaler import StandardScaler
    from offlinerlkit.utils.termination_fns import get_termination_fn

    dataset = qlearning_dataset(env, dataset=env.get_dataset())
    pargs.obs_shape, pargs.action_dim = env.observation_space.shape, int(np.prod(env.action_space.shape))
    pargs.max_action = env.action_space.high[0]
    random.seed(pargs.seed)
    np.random.seed(pargs.seed)
    torch.manual_seed(pargs.seed)
    torch.cuda.manual_seed_all(pargs.seed)
    torch.backends.cudnn.deterministic = True
    env.seed(pargs.seed)

    obs_dim = int(np.prod(pargs.obs_shape))
    actor_backbone = MLP(input_dim=obs_dim, hidden_dims=pargs.hidden_dims)
    critic_backbones = [MLP(input_dim=obs_dim + pargs.action_dim, hidden_dims=pargs.hidden_dims) for _ in range(2)]
    dist = TanhDiagGaussian(
        latent_dim=actor_backbone.output_dim,
        output_dim=pargs.action_dim,
        unbounded=True,
        conditioned_sigma=True,
        max_mu=pargs.max_action,
    )
    actor = ActorProb(actor_backbone, dist, pargs.device)
    critic1, critic2 = (Critic(b, pargs.device) for b in critic_backbones)
    actor_optim = torch.optim.Adam(actor.parameters(), lr=pargs.actor_lr)
    critic1_optim = torch.optim.Adam(critic1.parameters(), lr=pargs.critic_lr)
    critic2_optim = torch.optim.Adam(critic2.parameters(), lr=pargs.critic_lr)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(actor_optim, run.args.lr_schedule_epochs)
    alpha = pargs.alpha
    if pargs.auto_alpha:
        pargs.target_entropy = pargs.target_entropy or -np.prod(env.action_space.shape)
        log_alpha = torch.zeros(1, requires_grad=True, device=pargs.device)
        alpha = (pargs.target_entropy, log_alpha, torch.optim.Adam([log_alpha], lr=pargs.alpha_lr))

    model = EnsembleDynamicsModel(
        obs_dim=obs_dim,
        action_dim=pargs.action_dim,
        hidden_dims=pargs.dynamics_hidden_dims,
        num_ensemble=pargs.n_ensemble,
        num_elites=pargs.n_elites,
        weight_decays=pargs.dynamics_weight_decay,
        device=pargs.device,
    )
    dynamics = EnsembleDynamics(
        model,
        torch.optim.Adam(model.parameters(), lr=pargs.dynamics_lr),
        StandardScaler(),
        get_termination_fn(task=pargs.task),
        penalty_coef=pargs.penalty_coef,
    )
    policy = MOPOPolicy(
        dynamics,
        actor,
        critic1,
        critic2,
        actor_optim,
        critic1_optim,
        critic2_optim,
        tau=pargs.tau,
        gamma=pargs.gamma,
        alpha=alpha,
    )

    def buffer(size: int) -> ReplayBuffer:
        return ReplayBuffer(
            buffer_size=size,
            obs_shape=pargs.obs_shape,
            obs_dtype=np.float32,
            action_dim=pargs.action_dim,
            action_dtype=np.float32,
            device=pargs.device,
        )

    real_buffer = buffer(len(dataset["observations"]))
    real_buffer.load_dataset(dataset)
    fake_buffer = buffer(pargs.rollout_batch_size * pargs.rollout_length * pargs.model_retain_epochs)
    return SimpleNamespace(
        policy=policy, dynamics=dynamics, real_buffer=real_buffer, fake_buffer=fake_buffer, lr_scheduler=lr_scheduler
    )


def make_trainer(pargs, env: OldGymEnv, parts: SimpleNamespace, logger, run: RunFolder):
    """The peer's ``MBPolicyTrainer`` with an ``_evaluate`` that also writes our metrics row and the harness
    checkpoint (it runs once per epoch, after the lr step and before the peer's own logging)."""
    from offlinerlkit.policy_trainer import MBPolicyTrainer

    class HarnessTrainer(MBPolicyTrainer):
        def _evaluate(self):
            info = run.timed(super()._evaluate, "evaluation")()
            train = {
                ours: float(self.logger._name2val[theirs])
                for theirs, ours in TRAIN_KEYS.items()
                if theirs in self.logger._name2val
            }
            run.log_epoch(
                info["eval/episode_reward"],
                {
                    **train,
                    "train/actor_lr": self.policy.actor_optim.param_groups[0]["lr"],
                    "model_buffer/size": self.fake_buffer._size,
                },
            )
            run.save_checkpoint(policy_state(parts, env))
            run.write_summary()
            return info

    parts.policy.rollout = run.timed(parts.policy.rollout, "rollout")
    return HarnessTrainer(
        policy=parts.policy,
        eval_env=env,
        real_buffer=parts.real_buffer,
        fake_buffer=parts.fake_buffer,
        logger=logger,
        rollout_setting=(pargs.rollout_freq, pargs.rollout_batch_size, pargs.rollout_length),
        epoch=run.args.epochs - run.epoch,
        step_per_epoch=pargs.step_per_epoch,
        batch_size=pargs.batch_size,
        real_ratio=pargs.real_ratio,
        eval_episodes=pargs.eval_episodes,
        lr_scheduler=parts.lr_scheduler,
    )


def policy_state(parts: SimpleNamespace, env: OldGymEnv) -> dict:
    """Everything the policy phase changes: networks, optimizers, alpha, lr schedule, model buffer, eval-env RNG."""
    policy = parts.policy
    state = {
        "policy": policy.state_dict(),
        "optims": {n: getattr(policy, n).state_dict() for n in OPTIMS},
        "alpha": torch.as_tensor(policy._alpha).detach().clone(),
        "lr_scheduler": parts.lr_scheduler.state_dict(),
        "fake_buffer": buffer_state(parts.fake_buffer, BUFFER_ARRAYS, BUFFER_COUNTERS),
        "eval_env_rng": env.rng_state(),
    }
    if policy._is_auto_alpha:
        state |= {"log_alpha": policy._log_alpha.detach().clone(), "alpha_optim": policy.alpha_optim.state_dict()}
    return state


def restore_policy_state(parts: SimpleNamespace, env: OldGymEnv, state: dict) -> None:
    """Inverse of :func:`policy_state`."""
    policy = parts.policy
    policy.load_state_dict(state["policy"])
    for name in OPTIMS:
        getattr(policy, name).load_state_dict(state["optims"][name])
    if policy._is_auto_alpha:
        policy._log_alpha.data.copy_(state["log_alpha"])
        policy.alpha_optim.load_state_dict(state["alpha_optim"])
        policy._alpha = state["alpha"]
    parts.lr_scheduler.load_state_dict(state["lr_scheduler"])
    load_buffer_state(parts.fake_buffer, state["fake_buffer"])
    env.set_rng_state(state["eval_env_rng"])


def fit_or_load_dynamics(parts: SimpleNamespace, logger, run: RunFolder, resumed: bool) -> None:
    """Fit the ensemble with the peer's rule (``max_epochs_since_update=5`` as run_mopo.py; ``--model-epochs-cap``
    passed as its ``max_epochs``), or load the fitted one (the peer's own ``load``) when resuming or with
    ``--dynamics-from`` (that run's first model files)."""
    model_run = run.path if run.shared_fit is None else Path(run.extra["model_from"])
    if resumed or run.shared_fit is not None:
        parts.dynamics.load(str(model_run / "peer_output" / "log_from_epoch0" / "model"))
        parts.dynamics.model.eval()
        return
    start = time.perf_counter()
    parts.dynamics.train(
        parts.real_buffer.sample_all(), logger, max_epochs_since_update=5, max_epochs=run.args.model_epochs_cap
    )
    progress = Path(logger.record_dir) / "dynamics_training_progress.csv"
    last = progress.read_text().strip().splitlines()
    header, row = last[0].split(","), last[-1].split(",")
    record = dict(zip(header, row))
    run.extra.update(
        model_fit_s=time.perf_counter() - start,
        model_fit_epochs=int(float(record["timestep"])),
        model_holdout_loss=float(record["loss/dynamics_holdout_loss"]),
    )
    run.save_fitted_model(None)  # the model files are the peer's own, in log_from_epoch0/model
    print(
        f"[{ALGO}] model fit: {run.extra['model_fit_epochs']} epochs, last holdout loss "
        f"{run.extra['model_holdout_loss']:.4f}, {run.extra['model_fit_s']:.0f}s",
        flush=True,
    )


def main(args) -> None:
    """Set up the peer with our data, environment and budget (``args``: :func:`peer_harness.run_main`) and run it."""
    root = peer_root("OFFLINERL_KIT_PATH", str(SCRIPT))
    dataset, env_id, env_kwargs = load_peer_dataset(args.dataset)
    task = peer_task(dataset, args.peer_config)
    pargs = peer_args(root, task, args)
    run = RunFolder(args, ALGO, dataset, env_id, env_kwargs)
    run.load_shared_fit()  # a bad --dynamics-from fails here, before anything is written or deleted
    resume_state = run.load_checkpoint()
    if resume_state is not None and run.epoch >= args.epochs:
        print(f"[{ALGO}] {args.out}: already at epoch {run.epoch} of {args.epochs}")
        return
    run.write_config(
        {
            "name": "MOPO (OfflineRL-Kit)",
            "repo": REPO,
            "path": str(root),
            **peer_commit(root),
            "entry": f"{SCRIPT} (defaults) + offlinerlkit MBPolicyTrainer",
        },
        vars(pargs),
        departures(args),
    )
    env = OldGymEnv(env_id, dataset, env_kwargs)
    parts = build(pargs, env, run)
    from offlinerlkit.utils.logger import Logger

    log_dir = run.peer_dir / f"log_from_epoch{run.epoch}"  # a new one per (re)start: the peer's Logger needs that
    if run.epoch > 0:
        shutil.rmtree(log_dir, ignore_errors=True)  # an earlier attempt to resume from this epoch
    log_dir.mkdir(parents=True)
    logger = Logger(
        str(log_dir),
        {
            "consoleout_backup": "stdout",
            "policy_training_progress": "csv",
            "dynamics_training_progress": "csv",
            "tb": "tensorboard",
        },
    )
    logger.log_hyperparameters(vars(pargs))
    fit_or_load_dynamics(parts, logger, run, resume_state is not None)
    trainer = make_trainer(pargs, env, parts, logger, run)
    run.open_metrics()
    if resume_state is not None:
        restore_policy_state(parts, env, resume_state)
        run.restore_rng(resume_state)
        print(f"[{ALGO}] resuming after epoch {run.epoch}", flush=True)
        run.warn_rollout_phase(pargs.rollout_freq)
    trainer.train()
    print(yaml.safe_dump(run.write_summary(), sort_keys=False))


def departures(args) -> list[str]:
    """What differs from running the peer's run_mopo.py on D4RL (recorded in config.yaml)."""
    return [
        (
            f"budget: {args.epochs} epochs x {args.steps_per_epoch} steps, rollout batch {args.rollout_batch_size}, "
            f"model retain {args.model_retain_epochs}, {args.eval_episodes} eval episodes"
        ),
        f"actor-lr cosine period {args.lr_schedule_epochs} epochs (peer: its --epoch)",
        (
            "data: our dataset in the raw D4RL layout through the peer's qlearning_dataset; environment: "
            "gymnasium env behind the old gym API; normalized scores: our dataset's reference returns"
        ),
        (
            f"device {args.device}, {args.threads} torch thread(s)"
            + (f"; model fit capped at {args.model_epochs_cap} epochs" if args.model_epochs_cap else "")
        ),
        *(
            [f"model: the one fitted by {args.dynamics_from} (one fit shared by the seeds, as ours)"]
            * bool(args.dynamics_from)
        ),
    ]


if __name__ == "__main__":
    run_main(main, __doc__.split("\n\n")[0], FULL_EPOCHS)
