"""The official ADMPO code (github.com/HxLyn3/ADMPO, ADMPO-OFF) on one of our datasets at our budget, written as
one of our run folders (``config.yaml``, ``metrics.csv``, ``summary.json``).

    ADMPO_OFFICIAL_PATH=/work/peers-src/ADMPO PYTHONPATH=. OMP_NUM_THREADS=1 \\
        python benchmarks/peers/run_admpo_official.py --dataset minari:offline_mbrl/hopper/medium-v0 \\
        --seed 0 --epochs 200 --rollout-batch-size 5000 --out RUN_DIR [--resume]

Taken from the peer unchanged: ``main4offline.py``'s argument defaults, ``config/d4rl/<task>.yml``, the seeding
of ``main4offline.py``, and its ``OFFTrainer``: dataset loading into its sequence buffer, the any-step model fit
with its own early stopping, roll-outs, SAC updates, the evaluation loop, the hopper termination function.
Adapted at the boundary (see README.md): the dataset and the gymnasium environment (old gym API), the budget
flags, the actor-lr cosine period (``--lr-schedule-epochs``), the output format, and the harness checkpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one line per epoch instead of bars

import copy
import ctypes
import importlib
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from offline_mbrl.persist import set_rng_state

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

ALGO = "admpo-official"
REPO = "https://github.com/HxLyn3/ADMPO"
FULL_EPOCHS = 5000  # main4offline.py --n-epochs default: the period of its actor-lr cosine
BUFFER_ARRAYS, BUFFER_COUNTERS = ["s", "a", "r", "s_", "done", "timeout"], ["cnt", "size"]
AGENT_MODULES = ["actor", "critic1", "critic2", "critic1_trgt", "critic2_trgt", "dynamics"]
AGENT_OPTIMS = ["actor_optim", "critic1_optim", "critic2_optim"]


class _ModelCapReached(Exception):
    """Raised at the start of model-fit epoch ``cap + 1`` to stop the peer's fit loop (``--model-epochs-cap``)."""


def peer_args(root: Path, task: str, args) -> object:
    """The peer's own argument namespace: ``main4offline.get_args()`` defaults, then ``config/d4rl/<task>.yml``
    (as its ``main`` applies it), then our budget."""
    stub_module("setproctitle", setproctitle=lambda *_: None)
    saved_argv = sys.argv
    sys.argv = ["main4offline.py", "--env", "d4rl", "--env-name", task]
    try:
        main4offline = importlib.import_module("main4offline")
        pargs = main4offline.get_args()
    finally:
        sys.argv = saved_argv
    config = root / "config" / "d4rl" / f"{task}.yml"
    if not config.is_file():
        known = sorted(p.stem for p in (root / "config" / "d4rl").glob("*.yml"))
        raise PeerSetupError(f"{config}: the peer has no config for '{task}'; known: {known} (--peer-config)")
    for key, value in yaml.safe_load(config.read_text()).items():
        setattr(pargs, key, value)
    pargs.n_epochs, pargs.step_per_epoch = args.epochs, args.steps_per_epoch
    pargs.rollout_batch_size, pargs.model_retain_epochs = args.rollout_batch_size, args.model_retain_epochs
    pargs.eval_n_episodes, pargs.device = args.eval_episodes, args.device
    pargs.seed, pargs.seeds = args.seed, [args.seed]
    pargs.peer_config_file = str(config)
    return pargs


def seed_everything(seed: int) -> None:
    """Seed as ``main4offline.main`` does before building a trainer."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def make_trainer_class(off_trainer: type, admpo_module) -> type:
    """A subclass of the peer's ``OFFTrainer`` that only observes: it times roll-outs and evaluation, writes our
    metrics row and the harness checkpoint after each epoch, and sets the actor-lr cosine period."""

    class HarnessTrainer(off_trainer):
        def __init__(self, pargs, run: RunFolder, resume_state: dict | None) -> None:
            self.run_folder, self.resume_state = run, resume_state
            super().__init__(pargs)
            self.lr_scheduler = (
                torch.optim.lr_scheduler.CosineAnnealingLR(self.agent.actor_optim, run.args.lr_schedule_epochs)
                if pargs.lr_schedule
                else None
            )
            self.agent.rollout = run.timed(self.agent.rollout, "rollout")
            self.agent.learn_dynamics_from = self._fit_or_restore(self.agent.learn_dynamics_from)
            if resume_state is not None:
                self._restore(resume_state)
                self.n_epochs = run.args.epochs - run.epoch

        def _fit_or_restore(self, fit):
            def fit_dynamics(buffer, batch_size, **kwargs):
                if self.resume_state is not None:  # dynamics restored from the harness checkpoint
                    return self.run_folder.extra["model_holdout_loss"]
                run = self.run_folder
                if run.shared_fit is not None:
                    self.agent.dynamics.load_state_dict(run.shared_fit["dynamics"])
                    print(f"[{ALGO}] model from {run.extra['model_from']} (no fit)", flush=True)
                    run.restart_clock()
                    return run.extra["model_holdout_loss"]
                fit_state, start = run.load_fit_checkpoint(), time.perf_counter()
                before = float(fit_state["fit_s"]) if fit_state is not None else 0.0
                if fit_state is not None:
                    print(f"[{ALGO}] resuming the model fit at its epoch {fit_state['epoch']}", flush=True)

                def save(state: dict) -> None:
                    run.save_fit_checkpoint({**state, "fit_s": before + time.perf_counter() - start})

                loss, epochs = capped_fit(
                    fit,
                    admpo_module,
                    self.agent,
                    run.args.model_epochs_cap,
                    buffer,
                    batch_size,
                    fit_state,
                    save,
                    **kwargs,
                )
                fit_s = before + time.perf_counter() - start
                run.extra.update(model_holdout_loss=loss, model_fit_epochs=epochs, model_fit_s=fit_s)
                run.save_fitted_model(self.agent.dynamics.state_dict())
                print(f"[{ALGO}] model fit: {epochs} epochs, holdout loss {loss:.4f}, {fit_s:.0f}s", flush=True)
                run.restart_clock()
                return loss

            return fit_dynamics

        def _eval_policy(self):
            self.last_returns = self.run_folder.timed(super()._eval_policy, "evaluation")()
            return self.last_returns

        def _save(self, records):
            super()._save(records)  # the peer's own per-epoch model and record files
            run = self.run_folder
            run.log_epoch(
                self.last_returns,
                {
                    "train/actor_loss": records["loss"]["actor"][-1],
                    "train/critic1_loss": records["loss"]["critic1"][-1],
                    "train/critic2_loss": records["loss"]["critic2"][-1],
                    "train/alpha": float(records["alpha"][-1]),
                    "train/actor_lr": self.agent.actor_optim.param_groups[0]["lr"],
                    "model_buffer/size": self.model_memory.size,
                },
            )
            run.save_checkpoint(self._state())
            run.write_summary()

        def _state(self) -> dict:
            agent = self.agent
            state = {
                "modules": {n: getattr(agent, n).state_dict() for n in AGENT_MODULES},
                "optims": {n: getattr(agent, n).state_dict() for n in AGENT_OPTIMS},
                "critic_cnt": agent.critic_cnt,
                "alpha": agent._alpha.detach().clone(),
                "model_memory": buffer_state(self.model_memory, BUFFER_ARRAYS, BUFFER_COUNTERS),
                "eval_env_rng": self.eval_env.rng_state(),
            }
            if agent._auto_alpha:
                state |= {
                    "log_alpha": agent._log_alpha.detach().clone(),
                    "alpha_optim": agent._alpha_optim.state_dict(),
                }
            if self.lr_scheduler is not None:
                state["lr_scheduler"] = self.lr_scheduler.state_dict()
            return state

        def _restore(self, state: dict) -> None:
            agent = self.agent
            for name in AGENT_MODULES:
                getattr(agent, name).load_state_dict(state["modules"][name])
            for name in AGENT_OPTIMS:
                getattr(agent, name).load_state_dict(state["optims"][name])
            agent.critic_cnt, agent._alpha = int(state["critic_cnt"]), state["alpha"]
            if agent._auto_alpha:
                agent._log_alpha.data.copy_(state["log_alpha"])
                agent._alpha_optim.load_state_dict(state["alpha_optim"])
            if self.lr_scheduler is not None:
                self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            load_buffer_state(self.model_memory, state["model_memory"])
            self.eval_env.set_rng_state(state["eval_env_rng"])

    return HarnessTrainer


def int_sizes(admpo_module) -> None:
    """Hand the peer's dynamics model Python ints for its sizes: the peer passes ``np.prod(shape)`` (a NumPy
    integer), which ``torch.nn.GRU`` rejects since torch 2.x checks ``isinstance(size, int)``."""
    arm_dynamics = admpo_module.ARMDynamics

    def make(obs_dim, action_dim, **kwargs):
        return arm_dynamics(obs_dim=int(obs_dim), action_dim=int(action_dim), **kwargs)

    admpo_module.ARMDynamics = make


def capped_fit(
    fit,
    admpo_module,
    agent,
    cap: int | None,
    buffer,
    batch_size,
    fit_state: dict | None,
    save: Callable[[dict], None],
    **kwargs,
) -> tuple[float, int]:
    """Run the peer's model fit (``learn_dynamics_from``), watching the start of each of its epochs (its one
    progress bar per epoch): there ``save`` receives the fit's state (:func:`fit_frame_state`) from epoch 2 on; with
    ``fit_state`` (a saved state) the fit continues from that epoch exactly (:func:`restore_fit_frame`); with
    ``cap``, the fit stops at the start of epoch ``cap + 1`` and keeps the model its early stopping would keep
    (best holdout so far).

    Returns:
        (mean holdout loss of the kept model, epochs trained in all).
    """
    real_tqdm, epochs = admpo_module.tqdm, [0]

    def epoch_start(*args, **kw):
        frame = sys._getframe(1)  # learn_dynamics_from at the top of its epoch loop
        if epochs[0] == 0 and fit_state is not None:
            epochs[0] = restore_fit_frame(frame, agent, fit_state) - 1
        elif epochs[0] > 0:
            save(fit_frame_state(frame, agent))
        if cap is not None and epochs[0] >= cap:
            raise _ModelCapReached
        epochs[0] += 1
        return real_tqdm(*args, **kw)

    admpo_module.tqdm = epoch_start
    try:
        return fit(buffer, batch_size, **kwargs), epochs[0]
    except _ModelCapReached as stop:
        frame = _frame_of(stop, "learn_dynamics_from")
        agent.dynamics = frame["saved_dynamics"]
        return float(np.mean(frame["holdout_losses"])), epochs[0]
    finally:
        admpo_module.tqdm = real_tqdm


def fit_frame_state(frame, agent) -> dict:
    """The peer's model fit at the start of an epoch: the loop's locals (``epoch`` about to run, patience count
    ``cnt``, best ``holdout_losses`` per backtrack, the kept ``saved_dynamics``) and the model and its optimizer."""
    local = frame.f_locals
    return {
        "epoch": int(local["epoch"]),
        "cnt": int(local["cnt"]),
        "holdout_losses": [float(x) for x in local["holdout_losses"]],
        "saved_dynamics": local["saved_dynamics"].state_dict(),
        "dynamics": agent.dynamics.state_dict(),
        "dyna_optim": agent.dyna_optim.state_dict(),
    }


def restore_fit_frame(frame, agent, state: dict) -> int:
    """Inverse of :func:`fit_frame_state` on a fit that has just entered its first epoch, then the RNG states saved
    with it: the loop then runs epoch ``state["epoch"]`` as the stopped run would have. Returns that epoch."""
    agent.dynamics.load_state_dict(state["dynamics"])
    agent.dyna_optim.load_state_dict(state["dyna_optim"])
    saved = copy.deepcopy(agent.dynamics)
    saved.load_state_dict(state["saved_dynamics"])
    set_frame_locals(
        frame,
        epoch=state["epoch"],
        cnt=state["cnt"],
        holdout_losses=list(state["holdout_losses"]),
        saved_dynamics=saved,
    )
    set_rng_state(state["rng"], agent.device)
    return int(state["epoch"])


def set_frame_locals(frame, **values) -> None:
    """Assign local variables of a running function's frame (CPython: ``f_locals`` writes through from 3.13;
    before, the debugger's ``PyFrame_LocalsToFast``)."""
    if sys.version_info >= (3, 13):
        for name, value in values.items():
            frame.f_locals[name] = value
        return
    frame.f_locals.update(values)
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def _frame_of(exc: BaseException, function: str) -> dict:
    """The local variables of ``function``'s frame in the traceback of ``exc``."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return tb.tb_frame.f_locals
        tb = tb.tb_next
    raise PeerSetupError(f"the peer's {function} is not in the traceback; has its code changed?")


def peer_setup(args) -> tuple[Path, object, str, dict, object]:
    """The peer checkout (``ADMPO_OFFICIAL_PATH``), our dataset (``args.dataset``) behind the peer's ``env`` module,
    and the peer's argument namespace for the task at our budget (:func:`peer_args`).

    Returns:
        (peer root, dataset, env id, env kwargs, peer args).

    Raises:
        PeerSetupError: as :func:`peer_root`, :func:`load_peer_dataset`, :func:`peer_task`, :func:`peer_args`.
    """
    root = peer_root("ADMPO_OFFICIAL_PATH", "main4offline.py")
    dataset, env_id, env_kwargs = load_peer_dataset(args.dataset)
    task = peer_task(dataset, args.peer_config)
    stub_module("env", ENV={"d4rl": lambda _name: OldGymEnv(env_id, dataset, env_kwargs)})  # no gym/d4rl/neorl
    return root, dataset, env_id, env_kwargs, peer_args(root, task, args)


def build_trainer(pargs, run: RunFolder, resume_state: dict | None):
    """The peer's ``OFFTrainer`` (as :func:`make_trainer_class` observes it), seeded as ``main4offline.main`` does;
    changes the working directory to ``run.peer_dir``, where the peer writes its ``./result/...`` files."""
    seed_everything(run.args.seed)
    run.peer_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(run.peer_dir)
    admpo_module = importlib.import_module("agent.admpo")
    int_sizes(admpo_module)
    trainer_class = make_trainer_class(importlib.import_module("runner.offline_trainer").OFFTrainer, admpo_module)
    return trainer_class(pargs, run, resume_state)


def main(args) -> None:
    """Set up the peer with our data, environment and budget (``args``: :func:`peer_harness.run_main`) and run it."""
    root, dataset, env_id, env_kwargs, pargs = peer_setup(args)
    run = RunFolder(args, ALGO, dataset, env_id, env_kwargs)
    run.load_shared_fit()  # a bad --dynamics-from fails here, before anything is written or deleted
    resume_state = run.load_checkpoint()
    if resume_state is not None and run.epoch >= args.epochs:
        print(f"[{ALGO}] {args.out}: already at epoch {run.epoch} of {args.epochs}")
        return
    run.write_config(
        {
            "name": "ADMPO (official)",
            "repo": REPO,
            "path": str(root),
            **peer_commit(root),
            "entry": "runner.offline_trainer.OFFTrainer",
        },
        {k: v for k, v in vars(pargs).items() if k not in ("action_space",)},
        departures(args),
    )
    trainer = build_trainer(pargs, run, resume_state)
    run.open_metrics()
    if resume_state is not None:
        run.restore_rng(resume_state)
        print(f"[{ALGO}] resuming after epoch {run.epoch}", flush=True)
        run.warn_rollout_phase(pargs.rollout_freq)
    trainer.run()
    print(yaml.safe_dump(run.write_summary(), sort_keys=False))


def departures(args) -> list[str]:
    """What differs from running the peer's main4offline.py on D4RL (recorded in config.yaml)."""
    return [
        (
            f"budget: {args.epochs} epochs x {args.steps_per_epoch} steps, rollout batch {args.rollout_batch_size}, "
            f"model retain {args.model_retain_epochs}, {args.eval_episodes} eval episodes"
        ),
        f"actor-lr cosine period {args.lr_schedule_epochs} epochs (peer: its n_epochs)",
        (
            "data: our dataset in the raw D4RL layout; environment: gymnasium env behind the old gym API; "
            "normalized scores: our dataset's reference returns"
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
