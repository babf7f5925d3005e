"""`offline-mbrl train` (the algorithms of ``registry.ALGORITHMS`` on the Alg. 3 harness), `offline-mbrl evaluate
RUN_DIR` and `offline-mbrl quickstart` (the README's `make run`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import CONFIG_DIR
from ..errors import ConfigError
from ..registry import ALGORITHMS
from ..runs import run_dir_for
from .collect_cmd import RECIPES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help=f"train a model-based algorithm ({', '.join(ALGORITHMS)}) on a dataset or online in an env",
        description="Train an offline model-based algorithm on a dataset spec, or an online one in --env: "
        + "; ".join(f"{e.name}: {e.summary}" for e in ALGORITHMS.values())
        + ". The config is the algorithm's defaults <- --config (default: the shipped per-task file) <- --set "
        "overrides.",
    )
    p.add_argument("--algo", choices=tuple(ALGORITHMS), help="algorithm (required unless --resume)")
    p.add_argument("--dataset", help="dataset spec: minari:<id>, a D4RL .hdf5 or a NeoRL .npz")
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="train these seeds in one process, their SAC updates as one batched computation (admpo-off, mopo); "
        "each seed writes the run folder that --seed SEED would, with the same results to float rounding. "
        "Rerun the command to resume them, or resume one folder with --resume",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the SAC networks and the model's roll-out step (same results to float rounding; not "
        "part of the run config; not faster on the CPU measured in benchmarks/README.md)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        help="override the number of epochs (1000 SAC steps each by default; online: 1000 env steps; pal, mal: "
        "iterations of Alg. 3/4)",
    )
    p.add_argument(
        "--env",
        help="gymnasium id: for evaluation (offline; default: from the dataset's metadata), or the environment an "
        "online algorithm learns in (required for it)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set rollout.penalty_coef=2.5 (repeatable)",
    )
    p.add_argument(
        "--dynamics", type=Path, help="an existing model saved by `offline-mbrl model fit` (skips model fitting)"
    )
    p.add_argument("--runs", type=Path, default=Path("runs"), help="root of run folders")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a stopped run from its last checkpoint with its recorded config; other flags must "
        "agree with it, except a larger --epochs when the actor-lr period is fixed "
        "(sac.lr_schedule_epochs set, or sac.lr_schedule false), which is recorded",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "evaluate",
        help="re-evaluate the policy saved in a run folder",
        description="Re-evaluate the last checkpointed policy of a run folder in the real environment.",
    )
    e.add_argument("run_dir", type=Path)
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=_evaluate)

    q = subparsers.add_parser(
        "quickstart",
        help="make the Hopper-v5 medium dataset (if absent) and run ADMPO-OFF with configs/quickstart.yaml",
    )
    q.add_argument("--device", default="cpu")
    q.add_argument("--runs", type=Path, default=Path("runs"))
    q.add_argument("--config", type=Path, default=CONFIG_DIR / "quickstart.yaml")
    q.add_argument("--recipes", type=Path, default=RECIPES)
    q.set_defaults(func=_quickstart)


def _resume(args: argparse.Namespace):
    """``(config, run_dir, dataset=None, dynamics)`` of ``--resume RUN_DIR``: the recorded config and model.

    Raises:
        ConfigError: no ``config.yaml``; a flag that changes the recorded config (other than an allowed larger
            ``--epochs``) or names another ``--dynamics`` than the run's; the message lists the keys.
    """
    from ..config import load_yaml, override, resolve, resume_conflicts
    from ..runs import RunFolder

    folder = RunFolder(args.resume)
    config_file = folder.config_file
    recorded = resolve(load_yaml(config_file).get("algo"), config_file)
    requested = override(
        recorded,
        args.config,
        args.overrides,
        algo=args.algo,
        dataset=args.dataset,
        seed=args.seed,
        epochs=args.epochs,
        env_id=args.env,
    )
    conflicts = resume_conflicts(recorded, requested)
    recorded_dynamics = folder.read_summary().get("dynamics")  # None: fitted in the run folder
    if args.dynamics is not None and recorded_dynamics not in (None, str(args.dynamics.resolve())):
        conflicts.append(f"dynamics: {recorded_dynamics} -> {args.dynamics.resolve()}")
    if conflicts:
        raise ConfigError(
            f"train --resume {args.resume}: the flags conflict with the run's recorded config "
            f"({config_file}): {'; '.join(conflicts)}; start a new run instead"
        )
    return requested, args.resume, None, args.dynamics or (Path(recorded_dynamics) if recorded_dynamics else None)


def _resolve(args: argparse.Namespace):
    """``(config, run_dir, dataset, dynamics)`` from the flags (see :func:`_resume` for ``--resume``)."""
    from ..config import default_config_file, resolve
    from ..data.load import load_dataset

    if args.resume:
        return _resume(args)
    if args.algo and ALGORITHMS[args.algo].online:
        return _resolve_online(args)
    if not args.algo or not args.dataset:
        raise ConfigError("train: --algo and --dataset are required (or --resume RUN_DIR)")
    dataset = load_dataset(args.dataset)
    config_file = args.config or default_config_file(args.algo, dataset.metadata.get("task"), args.dataset)
    config = resolve(
        args.algo,
        config_file,
        args.overrides,
        dataset=args.dataset,
        seed=args.seed,
        epochs=args.epochs,
        env_id=args.env,
        task=dataset.metadata.get("task"),
    )
    return config, run_dir_for(args.runs, config), dataset, args.dynamics


def _resolve_online(args: argparse.Namespace):
    """``(config, run_dir, None, None)`` of an online algorithm (``registry.AlgorithmEntry.online``): it learns in
    ``--env`` with its shipped per-env config (``configs/<folder>/<env>.yaml``) unless ``--config`` is given.

    Raises:
        ConfigError: no ``--env``, or a ``--dataset``/``--dynamics`` given (an online run makes its own data and
            model).
    """
    from ..config import default_online_config_file, resolve

    if not args.env:
        raise ConfigError(f"train: --algo {args.algo} is online and needs --env (e.g. Hopper-v5)")
    for flag, value in (("--dataset", args.dataset), ("--dynamics", args.dynamics)):
        if value is not None:
            raise ConfigError(f"train: --algo {args.algo} is online: it collects its own data and model; drop {flag}")
    config_file = args.config or default_online_config_file(args.algo, args.env)
    config = resolve(args.algo, config_file, args.overrides, seed=args.seed, epochs=args.epochs, env_id=args.env)
    return config, run_dir_for(args.runs, config), None, None


def _train(args: argparse.Namespace) -> int:
    from ..algos.harness import OfflineTrainer

    if args.seeds is not None:
        return _train_seeds(args)
    config, run_dir, dataset, dynamics = _resolve(args)
    if ALGORITHMS[config.algo].online:
        if args.compile:
            raise ConfigError(f"train: --compile is not available for the online algorithm '{config.algo}' yet")
        trainer = _online_trainer_class(config.algo)(config, run_dir, args.device, progress=not args.no_progress)
        print(f"run folder: {run_dir}")
        _print_summary(trainer.train(resume=True), run_dir)
        return 0
    trainer = OfflineTrainer(
        config, run_dir, dataset, dynamics, args.device, progress=not args.no_progress, compile=args.compile
    )
    print(f"run folder: {run_dir}")
    summary = trainer.train(resume=True)
    _print_summary(summary, run_dir)
    return 0


def _train_seeds(args: argparse.Namespace) -> int:
    """``train --seeds S1 S2 ...``: one :class:`OfflineTrainer` per seed (each checked as a single run), trained
    together by ``algos.harness.SeedBatchTrainer``.

    Raises:
        ConfigError: ``--seeds`` with ``--seed`` or ``--resume``; a bad seed; as ``SeedBatchTrainer``.
    """
    from dataclasses import replace

    from ..algos.harness import OfflineTrainer, SeedBatchTrainer

    if args.seed is not None or args.resume is not None:
        raise ConfigError("train: --seeds cannot be combined with --seed or --resume (rerun --seeds to resume them)")
    if args.algo and ALGORITHMS[args.algo].online:
        raise ConfigError(f"train: --seeds is for offline algorithms; run the online '{args.algo}' once per --seed")
    config, _, dataset, dynamics = _resolve(args)
    configs = [replace(config, seed=seed) for seed in args.seeds]
    members = [
        OfflineTrainer(c, run_dir_for(args.runs, c), dataset, dynamics, args.device, not args.no_progress, args.compile)
        for c in configs
    ]
    for m in members:
        print(f"run folder: {m.run_dir}")
    for summary, m in zip(SeedBatchTrainer(members).train(resume=True), members):
        _print_summary(summary, m.run_dir)
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    score, source = summary["final_normalized_score"], summary["dataset"] or summary["env_id"]
    print(
        f"{summary['algo']} on {source}: epoch {summary['epochs_completed']}/{summary['epochs_total']}, "
        f"final return {summary['final_return']:.1f}" + (f", normalized score {score:.1f}" if score is not None else "")
    )
    print(f"score reference: {summary['score_reference_note']}")
    print(f"run folder: {run_dir}")


def _evaluate(args: argparse.Namespace) -> int:
    from ..algos.harness import evaluate_run

    returns, scores = evaluate_run(args.run_dir, args.episodes, args.seed, args.device)
    print(
        f"{args.run_dir}: return {returns.mean():.1f} ± {returns.std():.1f} over {len(returns)} episodes"
        + (f", normalized score {scores.mean():.1f} ± {scores.std():.1f}" if scores is not None else "")
    )
    return 0


QUICKSTART_NEXT = """
This was a smoke budget ({steps:,} SAC steps on a small ADM fitted for {fit_epochs} epochs, {seconds:.0f} s in all): \
it shows
that the pipeline runs end to end, not how well ADMPO-OFF does. A result run fits the full ADM to its early-stopping
rule once (the official one-batch validation), then trains 200,000 SAC steps per seed (README, "Results", has the
measured scores and wall times):
  offline-mbrl model fit --model adm --dataset {spec} --validation-batch 256 --out models/adm-hopper-medium.pt
  offline-mbrl train --algo admpo-off --dataset {spec} --epochs 200 --dynamics models/adm-hopper-medium.pt \\
      --set sac.lr_schedule_epochs=5000 --set rollout.rollout_batch_size=5000 --set rollout.model_retain_epochs=50 \\
      --set dynamics.validation_batch=256
{timing}"""
"""Printed after the quickstart's score: what the number means and the command of a real result."""
FULL_RESULT_TIMING = (
    "Measured here (2026-11-30, 2 CPU cores shared by 4-6 jobs, one thread each): the ADM fit takes about 40 s per "
    "epoch, and the official validation stopped it after a median 169-250 epochs when replayed on an earlier fit's "
    "record (2-3 h; the result fit stopped at epoch 142, 1 h 40 min); three ADMPO-OFF seeds as one batch (--seeds "
    "0 1 2) took 3 h 30 min for their 200 epochs (52-68 s per epoch), a single seed 88-330 s per epoch before "
    "(median 117 s); MOPO takes 35-130 s per epoch, 2-6 h."
)
"""The measured wall time of the result recipe above (kept beside the README's figures)."""


def _online_trainer_class(algo: str) -> type:
    """The trainer of an online ``algo``: PAL/MAL/NPG's game loop (``algos.game_harness``) or the online SAC harness
    (``algos.online_harness``), by its registry ``loop``."""
    if ALGORITHMS[algo].loop == "game":
        from ..algos.game_harness import GameTrainer

        return GameTrainer
    from ..algos.online_harness import OnlineTrainer

    return OnlineTrainer


def _quickstart(args: argparse.Namespace) -> int:
    from ..algos.harness import OfflineTrainer
    from ..config import resolve
    from ..data.load import load_dataset
    from ..data.scores import normalized_score
    from ..errors import DatasetNotFoundError
    from ..persist import parse_device
    from .collect_cmd import load_recipe
    from .dataset_cmd import format_summary

    start = time.perf_counter()
    parse_device(args.device)  # before minutes of data collection
    recipe = load_recipe("hopper-medium", args.recipes)
    spec = f"minari:{recipe['dataset_id']}"
    try:
        dataset = load_dataset(spec)
    except DatasetNotFoundError:
        from ..algos.collect import make_from_recipe

        print(f"making {spec} from the shipped medium policy ({args.recipes.parent}) ...", flush=True)
        make_from_recipe(recipe, args.recipes.parent)
        dataset = load_dataset(spec)
    print(format_summary(dataset), flush=True)
    config = resolve(None, args.config, dataset=spec)
    run_dir = run_dir_for(args.runs, config)
    summary = OfflineTrainer(config, run_dir, dataset, device=args.device).train(resume=True)
    behaviour = float(normalized_score(dataset, dataset.episode_returns()).mean())
    _print_summary(summary, run_dir)
    print(f"behaviour policy (mean over the dataset's episodes): normalized score {behaviour:.1f}")
    print(
        QUICKSTART_NEXT.format(
            steps=summary["sac_steps"],
            fit_epochs=config.dynamics.max_epochs,
            spec=spec,
            seconds=time.perf_counter() - start,
            timing=FULL_RESULT_TIMING,
        )
    )
    return 0
