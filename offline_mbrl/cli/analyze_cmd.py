"""``offline-mbrl tabulate RUNS...`` and ``offline-mbrl analyze <analysis> ...``.

Thin wrappers: the work is in ``offline_mbrl.analysis``. To add an analysis, write one function
``_add_<name>(subparsers)`` that adds its parser and sets ``func``, and append it to ``ANALYSES``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from ..analysis import plots, tables, trend
from ..analysis.runs_io import VALUE_COLUMNS, Run, evaluations, read_runs
from ..errors import ConfigError


def _add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        type=_labelled_path,
        metavar="RUNS",
        help="run folders, or folders searched recursively for run folders (holding metrics.csv); LABEL=PATH "
        "shows every run under PATH as algorithm LABEL, so that variants of one algorithm stand side by side "
        "(e.g. mopo-50k=runs-50k mopo-5k=runs-5k)",
    )
    parser.add_argument(
        "--value",
        choices=sorted(VALUE_COLUMNS),
        default="normalized",
        help="metrics.csv value: per-episode-normalized score (default), raw return, or (online runs) model_error: "
        "the model's MSE on the real transitions collected since its previous fit (ADM Fig. 5)",
    )


def _labelled_path(text: str) -> tuple[str | None, str]:
    """argparse type of a ``RUNS`` entry: ``PATH`` -> (None, PATH); ``LABEL=PATH`` -> (LABEL, PATH), unless the
    whole text names an existing folder."""
    label, sep, path = text.partition("=")
    if not sep or Path(text).is_dir():
        return None, text
    if not label or not path:
        raise argparse.ArgumentTypeError(f"expected PATH or LABEL=PATH, got {text!r}")
    return label, path


def _read_runs(args: argparse.Namespace) -> list[Run]:
    """The runs of ``args.runs`` (``_labelled_path`` entries), read and checked by ``runs_io.read_runs``."""
    return read_runs([path for _, path in args.runs], labels=[label for label, _ in args.runs])


def _add_at_step(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--at-step",
        type=float,
        default=None,
        metavar="N",
        help="only evaluations at step <= N (environment steps online, SAC steps offline): runs compared at "
        "equal budget",
    )


def _add_tabulate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tabulate", help="score tables over seeds (Markdown, LaTeX, CSV)", description=tables.__doc__.split("\n\n")[0]
    )
    _add_runs_arguments(parser)
    parser.add_argument("--format", choices=tables.FORMATS, default="markdown")
    parser.add_argument(
        "--score",
        choices=[*tables.SCORE_KINDS, "both"],
        default="both",
        help="final: last evaluation; last10: per-seed mean of the last 10 evaluations; both: final and last10; "
        "reach: the step of the first evaluation scoring at least --threshold (sample efficiency)",
    )
    parser.add_argument("--threshold", type=float, default=None, help="the score of --score reach")
    _add_at_step(parser)
    parser.add_argument(
        "--algos",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated algorithm columns in this order (default: all, sorted)",
    )
    parser.add_argument("--decimals", type=int, default=1)
    _add_reference(parser, "columns of given scores before the algorithms, e.g. behaviour=33.7 on every task row")
    parser.set_defaults(func=_run_tabulate)


def _run_tabulate(args: argparse.Namespace) -> int:
    if (args.score == "reach") != (args.threshold is not None):
        raise ConfigError("tabulate: --threshold goes with --score reach, and --score reach needs it")
    kinds = ("final", "last10") if args.score == "both" else (args.score,)
    print(
        tables.format_tables(
            _read_runs(args),
            fmt=args.format,
            kinds=kinds,
            value=args.value,
            algos=args.algos,
            decimals=args.decimals,
            at_step=args.at_step,
            threshold=args.threshold,
            references=dict(args.reference),
        ),
        end="",
    )
    return 0


def _runs_analysis(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, module
) -> argparse.ArgumentParser:
    """The parser of an analysis of run folders (``RUNS... --value``), described by ``module``'s first paragraph."""
    parser = subparsers.add_parser(name, help=help_text, description=module.__doc__.split("\n\n")[0])
    _add_runs_arguments(parser)
    return parser


def _add_curves(subparsers: argparse._SubParsersAction) -> None:
    parser = _runs_analysis(subparsers, "curves", "learning curves: score vs SAC step, mean and band over seeds", plots)
    parser.add_argument("--out", required=True, metavar="PNG", help="figure path; the plotted numbers go to .csv")
    parser.add_argument(
        "--band",
        choices=plots.BANDS,
        default="sd",
        help="sd: mean ± std over seeds (ddof=1); se: mean ± standard error",
    )
    _add_reference(parser, "dashed horizontal lines in every panel, e.g. behaviour=33.7")
    _add_at_step(parser)
    parser.set_defaults(func=_run_curves)


def _add_reference(parser: argparse.ArgumentParser, what: str) -> None:
    """``--reference NAME[@TASK]=SCORE ...`` of ``tabulate`` and ``curves`` (``what`` it draws)."""
    parser.add_argument(
        "--reference",
        nargs="+",
        type=_reference,
        default=[],
        metavar="NAME=SCORE",
        help=f"{what} (units of --value); NAME@TASK=SCORE for that task only, "
        "e.g. behaviour@offline_mbrl/hopper/medium-v0=33.7",
    )


def _reference(text: str) -> tuple[str, float]:
    """argparse type of ``NAME=SCORE`` (or ``NAME@TASK=SCORE``) with a finite float score."""
    name, _, score = text.rpartition("=")
    try:
        value = float(score)
    except ValueError:
        value = float("nan")
    if not name or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected NAME=SCORE with a finite number, got {text!r}")
    return name, value


def _run_curves(args: argparse.Namespace) -> int:
    png, csv = plots.plot_curves(
        _read_runs(args),
        args.out,
        value=args.value,
        band=args.band,
        references=dict(args.reference),
        at_step=args.at_step,
    )
    print(f"wrote {png} and {csv}")
    return 0


def _add_trend(subparsers: argparse._SubParsersAction) -> None:
    parser = _runs_analysis(
        subparsers, "trend", "the budget at which each learning curve's trend reaches a reference score", trend
    )
    _add_reference(parser, "scores to extrapolate to (required)")
    parser.add_argument(
        "--tail",
        type=float,
        default=0.5,
        help="fraction of the run fitted: evaluations after (1 - TAIL) x the last step every seed reached",
    )
    _add_at_step(parser)
    parser.add_argument("--out", metavar="CSV", help="also write the table as CSV")
    parser.set_defaults(func=_run_trend)


def _run_trend(args: argparse.Namespace) -> int:
    trends = trend.curve_trends(
        evaluations(_read_runs(args), args.value, args.at_step), dict(args.reference), args.tail
    )
    print(trend.trend_markdown(trends))
    if args.out:
        print(f"wrote {trend.write_trends(trends, args.out)}")
    return 0


ANALYSES: list[Callable[[argparse._SubParsersAction], None]] = [_add_curves, _add_trend]
"""Each entry adds one ``offline-mbrl analyze <name>`` sub-command to the given sub-parsers."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tabulate`` and the ``analyze`` group with every sub-command in ``ANALYSES``."""
    _add_tabulate(subparsers)
    analyze = subparsers.add_parser("analyze", help="analyses of run folders and models")
    analyses = analyze.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    for add in ANALYSES:
        add(analyses)


# ------------------------------------------------------------------ model analyses (ADM paper Figs. 2, 4, 6)
def _name_value(text: str) -> tuple[str, str]:
    """argparse type of ``NAME=VALUE``; a bare ``NAME`` stands for ``NAME=NAME`` (e.g. ``random``)."""
    name, sep, value = text.partition("=")
    if not name or (sep and not value):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value if sep else name


def _name_float(text: str) -> tuple[str, float]:
    """argparse type of ``NAME=NUMBER``."""
    name, value = _name_value(text)
    try:
        return name, float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from exc


def _device(text: str):
    """argparse type of a torch device (``cpu``, ``cuda``, ``cuda:1``)."""
    import torch

    try:
        return torch.device(text)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_model_analysis(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """A sub-parser with the arguments every model analysis shares: dataset, output folder, seed, device."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--dataset", required=True, help="dataset spec: minari:<id>, a D4RL .hdf5 or a NeoRL .npz")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("analysis/figures") / name,
        help="folder for the PNG, CSV (and Markdown) outputs",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds segment/start choice, sampling and dropout")
    parser.add_argument("--device", type=_device, default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    parser.set_defaults(func=func)
    return parser


def _dataset_and_env(args: argparse.Namespace):
    """The dataset of ``--dataset`` and the env id of ``--env`` (default: the dataset's ``env_id``).

    Raises:
        ConfigError: neither names an environment.
    """
    from ..data.load import load_dataset
    from ..errors import ConfigError

    dataset = load_dataset(args.dataset)
    env_id = args.env or dataset.metadata.get("env_id")
    if not env_id:
        raise ConfigError(f"{dataset.source}: the dataset names no environment; pass --env")
    return dataset, env_id


def _policies(args: argparse.Namespace, sources, dataset, env_id: str) -> dict:
    """``name -> policy`` for ``(name, source)`` pairs (``calibration.make_policy``; bc with ``--bc-steps``)."""
    from ..analysis import calibration
    from ..analysis.bc import BCConfig

    bc_config = BCConfig(steps=args.bc_steps, seed=args.seed)
    return {
        name: calibration.make_policy(source, dataset, env_id, args.device, args.seed, bc_config)
        for name, source in sources
    }


def _add_oracle_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bc-steps``, ``--env`` and ``--d4rl-model``: the analyses that step the real env (the oracle)."""
    parser.add_argument("--bc-steps", type=int, default=10_000, help="gradient steps of the bc policy")
    parser.add_argument("--env", help="gymnasium id of the real env (default: the dataset's env_id)")
    parser.add_argument("--d4rl-model", action="store_true", help="Walker2d with D4RL's foot friction (D4RL data)")


def _print_written(summary: str, paths) -> int:
    """Print an analysis' terminal summary and the files it wrote; the command's exit code (0)."""
    print(summary)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--horizon", type=int, default=100, help="H, open-loop roll-out steps per segment")
    parser.add_argument(
        "--segments",
        type=int,
        default=None,
        help="number of segments drawn (seeded) from the eligible ones (default: all eligible)",
    )
    parser.add_argument(
        "--segments-from",
        choices=("holdout", "all"),
        default="holdout",
        help="holdout: episodes the model fit held out (rebuilt from --fit-seed and "
        "--holdout-split); all: every episode (the models have trained on them)",
    )
    parser.add_argument("--fit-seed", type=int, default=0, help="--seed the models were fitted with")
    parser.add_argument(
        "--holdout-split",
        choices=("episodes", "last"),
        default="episodes",
        help="--holdout-split the models were fitted with",
    )


def _add_compounding_error(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_model_analysis(
        subparsers,
        "compounding-error",
        "compounding error of dynamics models under open-loop roll-outs with recorded actions (ADM paper Fig. 2)",
        _run_compounding_error,
    )
    parser.add_argument(
        "--models",
        nargs="+",
        type=_name_value,
        required=True,
        metavar="NAME=PATH",
        help="models saved by `offline-mbrl model fit` (adm, ensemble, boot-rnn)",
    )
    parser.add_argument(
        "--adm-backtrack",
        nargs="+",
        choices=("random", "longest"),
        default=["random", "longest"],
        help="ADM curves: random backtracking (Alg. 1) and/or always k = m",
    )
    _add_segment_arguments(parser)


def _run_compounding_error(args: argparse.Namespace) -> int:
    from ..analysis import compounding
    from ..data.load import load_dataset
    from ..models.checkpoint import load_model

    dataset = load_dataset(args.dataset)
    models = {name: load_model(path, args.device) for name, path in args.models}
    segments = compounding.evaluation_segments(
        dataset,
        list(models.values()),
        args.horizon,
        args.segments_from,
        args.segments,
        args.fit_seed,
        args.holdout_split,
        args.seed,
    )
    result = compounding.compounding_error(models, dataset, segments, tuple(args.adm_backtrack), args.seed)
    paths = compounding.write_compounding(result, args.out_dir, title=f"{dataset.source} ({args.segments_from})")
    return _print_written(
        f"{len(segments)} segments; dropped non-finite samples per model: {result.num_nonfinite}", paths
    )


ANALYSES.append(_add_compounding_error)


# ------------------------------------------------------------------ TOM weight progression (TOM Section 5.2, Fig. 3)
def _add_tom_weights(subparsers: argparse._SubParsersAction) -> None:
    from pathlib import Path

    from .model_cmd import add_tom_arguments

    parser = subparsers.add_parser(
        "tom-weights",
        help="TOM vs PMAC weights over random + SAC replay data, per sequential bin (TOM Fig. 3)",
        description="Combine uniform-random transitions (first) with a SAC replay buffer (in collection order), "
        "weight every row for the target policy with TOM and the PMAC presets, and plot the mean "
        "weight per bin (PNG + CSV); --model-error also fits ADM with each weighting and tabulates "
        "its error on held-out target-policy transitions (CSV + Markdown).",
    )
    parser.add_argument(
        "--random",
        required=True,
        metavar="SPEC|N",
        help="random part: a dataset spec (e.g. a D4RL *_random .hdf5) or N fresh uniform-random steps",
    )
    parser.add_argument(
        "--replay",
        required=True,
        metavar="SPEC",
        help="SAC replay buffer: <env>_replay.npz of `offline-mbrl collect` or a dataset spec",
    )
    add_tom_arguments(parser)
    parser.add_argument("--bin-size", type=int, default=10_000, help="rows per bin (TOM's paper: 100000 of 2M)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("analysis/figures/tom_weights"),
        help="folder for the figure, bin CSV, per-row weights, summary and model-error table",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds roll-outs, TOM and the model fits")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--model-error",
        action="store_true",
        help="also fit ADM with uniform, PMAC and TOM weights and compare their errors",
    )
    parser.add_argument("--test-steps", type=int, default=5000, help="held-out target-policy steps (--model-error)")
    parser.add_argument("--horizon", type=int, default=10, help="open-loop roll-out steps H (--model-error)")
    parser.add_argument("--fit-epochs", type=int, default=20, help="epoch cap of each ADM fit (--model-error)")
    parser.add_argument("--max-backtrack", type=int, default=5, help="ADM's m (--model-error)")
    _add_adm_size_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the fit progress bars")
    parser.set_defaults(func=_run_tom_weights)


def _run_tom_weights(args: argparse.Namespace) -> int:
    from ..analysis import tom_weights as study
    from ..models.fit import FitConfig
    from .model_cmd import parse_device, tom_target_from_args

    device = parse_device(args.device)
    replay = study.load_replay(args.replay)
    env_id = study.env_id_of(replay, args.env_id)
    combined = study.combine_random_and_replay(study.load_random(args.random, env_id, args.seed), replay)
    target = tom_target_from_args(args, combined.dataset, device)
    progression = study.weight_progression(combined, target, args.bin_size, seed=args.seed, device=device)
    settings = {key: str(value) for key, value in vars(args).items() if key not in ("func", "command", "analysis")}
    paths = list(study.write_progression(progression, combined, args.out_dir, settings).values())
    print(study.format_progression(progression, combined))
    if args.model_error:
        test = study.target_test_set(target, env_id, args.test_steps, args.seed, device)
        weights = {"uniform": study.transition_weights("uniform", combined.dataset)[0], **progression.weights}
        table = study.model_error_study(
            combined.dataset,
            weights,
            test,
            horizon=args.horizon,
            fit_config=FitConfig(max_epochs=args.fit_epochs, seed=args.seed, holdout_split="last"),
            model_fields={"max_backtrack": args.max_backtrack, **_adm_size_fields(args)},
            device=device,
            progress=not args.no_progress,
        )
        sizes = ", ".join(f"{key} {value}" for key, value in _adm_size_fields(args).items()) or "official sizes"
        caption = (
            f"ADM (m = {args.max_backtrack}, {sizes}, at most {args.fit_epochs} epochs, "
            f"holdout = the last rows) fitted "
            f"on {combined.dataset.source}; "
            f"errors on {len(test)} held-out target-policy steps, open loop over H = {args.horizon}."
        )
        paths += study.write_model_error(table, args.horizon, args.out_dir, caption).values()
        print(study.markdown_table(table, ["method", "one_step_mse", f"open_loop_mse_h{args.horizon}", "note"]), end="")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


ANALYSES.append(_add_tom_weights)


def _add_calibration(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_model_analysis(
        subparsers,
        "calibration",
        "uncertainty quantifiers vs true model error on roll-outs of several policies (ADM paper Fig. 4)",
        _run_calibration,
    )
    parser.add_argument(
        "--model",
        nargs="+",
        required=True,
        metavar="PATH",
        help="ADM and/or ensemble models saved by `offline-mbrl model fit` (label: file stem)",
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        type=_name_value,
        required=True,
        metavar="NAME[=SOURCE]",
        help="roll-out policies: random, bc (behaviour cloning), an actor .pt file or an offline "
        "run folder, e.g. random behaviour=datasets/policies/hopper_medium.pt learned=runs/...",
    )
    parser.add_argument(
        "--auroc",
        nargs=2,
        default=["random", "behaviour"],
        metavar=("POSITIVE", "NEGATIVE"),
        help="policy names whose samples the AUROC of U tells apart",
    )
    parser.add_argument("--starts", type=int, default=1000, help="roll-out start histories drawn from the dataset")
    parser.add_argument("--horizon", type=int, default=10, help="H, roll-out steps")
    _add_oracle_arguments(parser)


def _run_calibration(args: argparse.Namespace) -> int:
    from ..analysis import calibration
    from ..envs.termination import termination_fn
    from ..models.checkpoint import load_model

    dataset, env_id = _dataset_and_env(args)
    models = {Path(path).stem: load_model(path, args.device) for path in args.model}
    policies = _policies(args, args.policies, dataset, env_id)
    points, counts = calibration.calibration_points(
        models,
        dataset,
        policies,
        calibration.oracle_for(dataset, env_id, args.d4rl_model),
        args.starts,
        args.horizon,
        termination_fn(dataset.metadata.get("task") or env_id),
        args.seed,
    )
    summary = calibration.calibration_summary(points, *args.auroc)
    paths = calibration.write_calibration(points, counts, summary, args.out_dir, dataset.source, *args.auroc)
    return _print_written(summary.to_string(index=False), paths)


ANALYSES.append(_add_calibration)


def _add_backtracking(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_model_analysis(
        subparsers,
        "backtracking",
        "maximum backtracking length ablation: fit ADM per m, "
        "holdout error per k, compounding error and run scores per m (ADM paper Fig. 6)",
        _run_backtracking,
    )
    parser.add_argument(
        "--m",
        nargs="+",
        type=int,
        required=True,
        dest="max_backtracks",
        metavar="M",
        help="max backtracking lengths to fit, e.g. 1 2 3 5 10",
    )
    parser.add_argument("--epochs", type=int, help="cap on fit epochs (default: stop by patience 25 only)")
    parser.add_argument(
        "--holdout-split",
        choices=("episodes", "last"),
        default="episodes",
        help="holdout rule of the fits; the compounding segments come from this holdout",
    )
    parser.add_argument("--horizon", type=int, default=100, help="H, open-loop roll-out steps per segment")
    parser.add_argument("--segments", type=int, default=None, help="holdout segments drawn (default: all eligible)")
    parser.add_argument(
        "--runs",
        nargs="+",
        type=_name_value,
        default=[],
        metavar="M=RUN_DIR",
        help="ADMPO-OFF run folders trained with max_backtrack M (repeat M for seeds)",
    )
    _add_adm_size_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the fit progress bars")


def _add_adm_size_arguments(parser: argparse.ArgumentParser) -> None:
    """ADM size flags of the analyses that fit ADMs (default: the official sizes)."""
    parser.add_argument("--hidden-dim", type=int, help="ADM GRU/head width (default 200)")
    parser.add_argument("--gru-layers", type=int, help="GRU layers (default 3)")
    parser.add_argument("--head-blocks", type=int, help="residual head blocks (default 4)")


def _adm_size_fields(args: argparse.Namespace) -> dict[str, int]:
    """The ADM size flags that were given, as ``RecurrentConfig`` fields."""
    return {
        name: getattr(args, name)
        for name in ("hidden_dim", "gru_layers", "head_blocks")
        if getattr(args, name) is not None
    }


def _run_backtracking(args: argparse.Namespace) -> int:
    from ..analysis import backtracking
    from ..data.load import load_dataset
    from ..errors import ConfigError
    from ..models.fit import FitConfig

    runs = []
    for m, path in args.runs:
        if not m.isdigit():
            raise ConfigError(f"--runs: expected M=RUN_DIR with an integer M, got {m}={path}")
        runs.append((int(m), path))
    fields = _adm_size_fields(args)
    dataset = load_dataset(args.dataset)
    config = FitConfig(max_epochs=args.epochs, seed=args.seed, holdout_split=args.holdout_split)
    result = backtracking.backtracking_ablation(
        dataset,
        args.max_backtracks,
        config,
        fields,
        args.horizon,
        args.segments,
        runs,
        args.device,
        not args.no_progress,
    )
    paths = backtracking.write_backtracking(result, args.out_dir, dataset.source)
    return _print_written(
        "mean holdout MSE over k, per m:\n" + result.holdout.groupby("m")["holdout_mse"].mean().to_string(), paths
    )


ANALYSES.append(_add_backtracking)


def _add_penalty(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_model_analysis(
        subparsers,
        "penalty",
        "predicted reward, uncertainty and penalized reward of a "
        "fitted model on dataset pairs and on behaviour-cloned and random roll-outs; the "
        "break-even penalty coefficient per quantifier",
        _run_penalty,
    )
    parser.add_argument(
        "--dynamics",
        required=True,
        type=Path,
        metavar="MODEL",
        help="an ADM or ensemble saved by `offline-mbrl model fit`",
    )
    parser.add_argument(
        "--penalty", nargs="+", metavar="NAME", help="quantifier(s) to measure (default: all that apply to the model)"
    )
    parser.add_argument(
        "--penalty-coef",
        type=float,
        metavar="BETA",
        help="beta of the r - beta*U panel (default: the rule beta)",
    )
    parser.add_argument(
        "--published-coef",
        nargs="+",
        type=_name_float,
        default=[],
        metavar="NAME=BETA",
        help="the algorithm's published beta per quantifier for the task (its D4RL config), e.g. adm_std=1.0: the "
        "rule beta is then min(published, half the break-even) instead of half the break-even",
    )
    parser.add_argument("--starts", type=int, default=2000, help="roll-out start histories drawn from the dataset")
    parser.add_argument("--horizon", type=int, default=5, help="H, steps of the behaviour and random roll-outs")
    parser.add_argument("--bc-steps", type=int, default=10_000, help="gradient steps of the behaviour-cloned policy")
    parser.add_argument("--env", help="gymnasium id for the action box (default: the dataset's env_id)")


def _run_penalty(args: argparse.Namespace) -> int:
    from ..analysis import penalty
    from ..envs.termination import termination_fn
    from ..models.checkpoint import load_model

    dataset, env_id = _dataset_and_env(args)
    model = load_model(args.dynamics, args.device)
    policies = _policies(args, (("behaviour", "bc"), ("random", "random")), dataset, env_id)
    study = penalty.penalty_study(
        model,
        dataset,
        policies,
        args.starts,
        args.horizon,
        termination_fn(dataset.metadata.get("task") or env_id),
        args.penalty_coef,
        tuple(args.penalty) if args.penalty else None,
        args.seed,
        dict(args.published_coef),
    )
    title = f"{args.dynamics.name} ({model.kind}) on {dataset.source}: H = {args.horizon}, {args.starts} starts"
    paths = penalty.write_penalty(study, args.out_dir, title)
    return _print_written(penalty.format_summary(study), paths)


ANALYSES.append(_add_penalty)


def _add_policy_gap(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_model_analysis(
        subparsers,
        "policy-gap",
        "closed-loop roll-outs of trained policies in the model and in the real env from the same dataset states "
        "and episode starts: survival, reward and uncertainty per step (model exploitation)",
        _run_policy_gap,
    )
    parser.add_argument(
        "--dynamics", required=True, type=Path, metavar="MODEL", help="an ADM or ensemble saved by `model fit`"
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        type=_name_value,
        required=True,
        metavar="NAME[=SOURCE]",
        help="policies: an offline run folder, an actor .pt file, bc or random, e.g. mopo=runs/mopo/.../seed0 bc",
    )
    parser.add_argument("--penalty", metavar="NAME", help="quantifier U (default: the model's first)")
    parser.add_argument("--penalty-coef", type=float, default=0.0, metavar="BETA", help="beta of r - beta*U")
    parser.add_argument("--starts", type=int, default=300, help="start states per start set")
    parser.add_argument("--horizon", type=int, default=20, help="H, closed-loop steps")
    _add_oracle_arguments(parser)


def _run_policy_gap(args: argparse.Namespace) -> int:
    from ..analysis import calibration, policy_gap
    from ..envs.termination import termination_fn
    from ..models.checkpoint import load_model

    dataset, env_id = _dataset_and_env(args)
    model = load_model(args.dynamics, args.device)
    oracle = calibration.oracle_for(dataset, env_id, args.d4rl_model)
    policies = _policies(args, args.policies, dataset, env_id)
    study = policy_gap.policy_gap(
        model,
        dataset,
        policies,
        oracle,
        args.starts,
        args.horizon,
        termination_fn(dataset.metadata.get("task") or env_id),
        args.penalty,
        args.penalty_coef,
        args.seed,
    )
    title = f"{args.dynamics.name} ({model.kind}) on {dataset.source}"
    paths = policy_gap.write_policy_gap(study, args.out_dir, title)
    return _print_written(policy_gap.format_summary(study), paths)


ANALYSES.append(_add_policy_gap)
