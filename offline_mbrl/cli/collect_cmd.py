"""`offline-mbrl collect` (train SAC online, then write the D4RL kinds as Minari datasets) and
`offline-mbrl dataset make <recipe>` (regenerate one dataset from the shipped policies)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import yaml

from ..errors import ConfigError, DatasetError

RECIPES = Path(__file__).resolve().parents[2] / "datasets" / "recipes.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "collect",
        help="train SAC online and collect D4RL-style datasets",
        description="Train SAC online on a gymnasium MuJoCo env, then write the D4RL "
        "kinds (random, medium, medium-replay, expert, medium-expert) as Minari "
        "datasets.",
    )
    p.add_argument("--env", required=True, help="gymnasium id: Hopper-v5, Walker2d-v5 or HalfCheetah-v5")
    # defaults (None) come from OnlineSACConfig, imported only when the command runs
    p.add_argument("--total-steps", type=int, help="SAC environment steps (default 300000)")
    p.add_argument("--warmup-steps", type=int, help="uniform-random steps first (default 5000)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default 5000)")
    p.add_argument("--hidden", type=int, nargs="+", help="SAC layer widths (default 128 128)")
    p.add_argument("--num-steps", type=int, default=100_000, help="transitions per policy dataset")
    p.add_argument(
        "--kinds", nargs="+", help="dataset kinds (default: random medium medium-replay expert medium-expert)"
    )
    p.add_argument("--medium-fraction", type=float, default=1 / 3, help="medium target, fraction of expert return")
    p.add_argument(
        "--end-step",
        type=int,
        help="take this evaluation step as the end of training (its snapshot is "
        "the expert, the replay file stops there); default: the final policy",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, help="SAC run folder (default runs/sac/<env>/seed<S>); resumed if present")
    p.add_argument("--out", type=Path, default=Path("collected"), help="policies, replay file, recipes.yaml")
    p.add_argument("--hdf5", action="store_true", help="also export each dataset as a D4RL-layout hdf5")
    p.add_argument("--overwrite", action="store_true", help="replace existing Minari datasets")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_collect)


def _collect(args: argparse.Namespace) -> int:
    from ..algos.collect import KINDS, collect_all, dataset_id
    from ..algos.online_sac import OnlineSACConfig, OnlineSACTrainer
    from ..data.minari_io import dataset_path
    from ..envs.gym_env import env_spaces
    from ..persist import parse_device, write_text_atomic

    if args.hidden is not None and min(args.hidden) < 1:
        raise ConfigError(f"collect: --hidden must be widths >= 1, got {args.hidden}")
    kinds = tuple(args.kinds or KINDS)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise DatasetError(f"collect: unknown dataset kind(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    parse_device(args.device)
    env_spaces(args.env)
    for kind in kinds:  # before hours of training: every id it will write is valid and inside the Minari root
        dataset_path(dataset_id(args.env, kind))
    default = OnlineSACConfig()
    given = {"total_steps": args.total_steps, "warmup_steps": args.warmup_steps, "eval_every": args.eval_every}
    config = replace(
        default,
        env_id=args.env,
        seed=args.seed,
        **{k: v for k, v in given.items() if v is not None},
        sac=replace(default.sac, hidden_dims=tuple(args.hidden or default.sac.hidden_dims)),
    )
    run_dir = args.run_dir or Path("runs") / "sac" / args.env / f"seed{args.seed}"
    OnlineSACTrainer(config, run_dir, args.device, progress=not args.no_progress).train(resume=True)
    recipes = collect_all(
        run_dir,
        args.out,
        args.env,
        kinds,
        args.num_steps,
        args.seed,
        args.medium_fraction,
        hdf5=args.hdf5,
        overwrite=args.overwrite,
        end_step=args.end_step,
    )
    path = args.out / "recipes.yaml"
    existing = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    write_text_atomic(path, yaml.safe_dump({**existing, **recipes}, sort_keys=True))
    for name, recipe in recipes.items():
        if "dataset_id" in recipe:
            print(
                f"{name:<24} {recipe['dataset_id']:<40} return {recipe['dataset_return_mean']:9.1f} "
                f"(D4RL-normalized {recipe['d4rl_normalized_return']:.1f})"
            )
    print(f"policies, replay file and recipes in {args.out}")
    return 0


def add_make(dataset_subparsers: argparse._SubParsersAction) -> None:
    """`dataset make <recipe>`: the ``dataset`` group's sub-command (registered by dataset_cmd)."""
    p = dataset_subparsers.add_parser(
        "make",
        help="regenerate a dataset from a shipped recipe",
        description="Regenerate a dataset from datasets/recipes.yaml and write it as a local Minari dataset.",
    )
    p.add_argument("recipe", help="recipe name, e.g. hopper-medium (see datasets/README.md)")
    p.add_argument("--recipes", type=Path, default=RECIPES, help="recipes file")
    p.add_argument("--num-steps", type=int, help="override the recipe's number of transitions")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--overwrite", action="store_true", help="replace the Minari dataset if it exists")
    p.set_defaults(func=_make)


def load_recipe(name: str, recipes_path: Path = RECIPES) -> dict:
    """Recipe ``name`` of a recipes file.

    Raises:
        DatasetError: the file is missing, not YAML, empty or not a mapping; an unknown name (the known ones are
            listed).
    """
    if not recipes_path.is_file():
        raise DatasetError(f"{recipes_path}: recipes file does not exist")
    try:
        recipes = yaml.safe_load(recipes_path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"{recipes_path}: not valid YAML ({exc})") from exc
    if not isinstance(recipes, dict) or not recipes:
        raise DatasetError(
            f"{recipes_path}: a recipes file must hold a non-empty mapping of recipe names, "
            f"got {type(recipes).__name__ if recipes is not None else 'an empty file'}"
        )
    if name not in recipes or name.startswith("_"):
        known = ", ".join(sorted(k for k in recipes if not k.startswith("_")))
        raise DatasetError(f"{recipes_path}: unknown recipe '{name}'; known recipes: {known}")
    return recipes[name]


def _make(args: argparse.Namespace) -> int:
    from ..algos.collect import make_from_recipe

    ds_id, data = make_from_recipe(
        load_recipe(args.recipe, args.recipes), args.recipes.parent, args.num_steps, args.seed, args.overwrite
    )
    returns = data.episode_returns()
    print(
        f"wrote minari:{ds_id}: {len(data)} transitions, {data.num_episodes} episodes, "
        f"mean episode return {returns.mean():.1f}"
    )
    return 0
