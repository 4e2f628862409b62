"""The ``optnas`` command line: parses options and delegates to the library.

Exit codes: 0 success, 1 runtime failure, 2 usage error (bad option values or input files).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from optnas import __version__
from optnas.boards import BOARDS
from optnas.cli_options import (
    check_device,
    config_options,
    device_option,
    flag_of,
    given_config,
    jobs_option,
    quiet_option,
    resolution_options,
    seed_option,
    storage_option,
    study_name_option,
    threads_option,
    together,
)
from optnas.config import PREFERENCES, SearchConfig, read_config_file
from optnas.errors import OptionError
from optnas.latency import RUNTIMES
from optnas.spaces.mobilenetv3 import DEFAULT_WIDTH_MULT, WIDTH_MULTS

# Flags of the reference scripts (CNAS msunas.py / post_search.py, see the README's "Coming from
# the reference scripts") that optnas spells differently or does not have. Every other
# `--a_b` is accepted as `--a-b` wherever the command has that option.
_REFERENCE_RENAMED = {"--first_predictor": "--predictor"}
_REFERENCE_REFUSED = {
    "--resume": "continue a study with `optnas resume --study-name NAME` (the study in --storage replaces "
                "iter_N.stats)",
    "--expr": "give `optnas select` the study with --study-name NAME (and --storage URL) instead of an "
              "iter_N.stats file",
    "--save_stats_csv": "drop it: `optnas select` always writes SAVE/selection.csv (--csv FILE writes it elsewhere)",
    "--pretrained": "give the pretrained weights with --supernet-path (without it a supernet is trained on the spot)",
    "--n_gpus": "run one `optnas worker --study-name NAME --device cuda:N` per GPU",
    "--gpu_list": "run one `optnas worker --study-name NAME --device cuda:N` per GPU",
    "--gpu": "each trial runs on one device: use --device cuda:N",
    "--slurm": "submit `optnas worker --study-name NAME` jobs from your own Slurm script",
    "--res": "use --lr and --ur (equal for a fixed resolution)",
    "--val_split": "use --vld-size (a number of held-out training images, not a fraction)",
    "--sigma_min": "use --sigma with comma-separated values (e.g. --sigma 0.05,0.1)",
    "--sigma_max": "use --sigma with comma-separated values (e.g. --sigma 0.05,0.1)",
    "--sigma_step": "use --sigma with comma-separated values (e.g. --sigma 0.05,0.1)",
    "--bench_eval": "drop it: nasbench201 candidates are always evaluated by table lookup",
    "--ood_eval": "evaluate a chosen network with `optnas ood` after the search",
}


def _reference_args(command: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
    """Rewrite the reference scripts' spellings of ``args`` into ``command``'s options.

    ``--a_b`` and ``--a_b=x`` become ``--a-b`` when the command has that option (or the renamed one
    of ``_REFERENCE_RENAMED``); a reference flag the command lacks is a one-line usage error.
    Option values are skipped, so a value that looks like a flag is left alone.
    """
    takes_value: dict[str, int] = {}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            for opt in param.opts:
                takes_value[opt] = 0 if param.is_flag or param.count else param.nargs
            for opt in param.secondary_opts:
                takes_value[opt] = 0
    rewritten: list[str] = []
    skip = 0
    for index, arg in enumerate(args):
        if skip:
            skip -= 1
        elif arg == "--":
            return rewritten + args[index:]
        elif arg.startswith("--"):
            name, equals, value = arg.partition("=")
            if name not in takes_value:
                ours = _REFERENCE_RENAMED.get(name, name.replace("_", "-"))
                if ours in takes_value:
                    name = ours
                elif name in _REFERENCE_REFUSED:
                    raise click.UsageError(f"{name} is a flag of the reference scripts that optnas does not "
                                           f"support; {_REFERENCE_REFUSED[name]}")
            arg = name + equals + value
            skip = 0 if equals else takes_value.get(name, 0)
        elif arg in takes_value:
            skip = takes_value[arg]
        rewritten.append(arg)
    return rewritten


class _ReferenceCommand(click.Command):
    """A command that also accepts the reference scripts' underscore spellings (not shown in --help)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _reference_args(self, ctx, args))


class _ReferenceGroup(click.Group):
    """A group whose commands, and those of its subgroups, are :class:`_ReferenceCommand` instances."""

    command_class = _ReferenceCommand
    group_class = type


def _friendly_errors(command: Callable) -> Callable:
    """Turn library errors into one-line messages and the documented exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from optnas.studies.errors import SearchFailedError, StorageError, StudyError, StudyExistsError

        try:
            return command(*args, **kwargs)
        except (StorageError, SearchFailedError) as error:
            raise click.ClickException(str(error)) from None
        except StudyExistsError as error:
            raise click.UsageError(f"{error}; continue it with `optnas resume --study-name {error.study_name} "
                                   "--storage ...`, or pick another --study-name") from None
        except OptionError as error:
            raise click.UsageError(error.render(flag_of)) from None
        except (StudyError, ValueError) as error:
            raise click.UsageError(str(error)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted: completed trials are stored; continue with `optnas resume`.", err=True)
            sys.exit(1)

    return wrapper


@click.group(cls=_ReferenceGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.version_option(__version__, prog_name="optnas")
def main() -> None:
    """Multi-objective, hardware-aware neural architecture search stored in Optuna studies."""
    import warnings

    import optuna

    # Progress bars and our own messages replace Optuna's per-trial log lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@main.command()
@storage_option("Optuna storage: any SQLAlchemy URL (sqlite:///file.db, postgresql://...).")
@study_name_option("Name of the new study [default: <space>-<dataset>-<objectives>].", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML or TOML file holding options (same names); flags override it.")
@jobs_option()
@quiet_option()
@click.option("--create-only", is_flag=True,
              help="Check the options and the data, store the study, evaluate nothing (then run `optnas worker`s).")
@config_options
@_friendly_errors
def search(storage: str, study_name: str | None, config_file: str | None, jobs: int, quiet: bool,
           create_only: bool, **values: Any) -> None:
    """Create a new study and run the search until its budget is spent."""
    from optnas.studies.search import start_search

    given = read_config_file(config_file) if config_file else {}
    given.update(given_config(values))
    config = SearchConfig.from_dict(given).validate()
    if values["device"] is None:
        # --device was checked as it was parsed; the --config file's device or the default was not.
        check_device(config.device)
    start_search(config, storage, study_name, echo=click.echo, progress=not quiet, n_jobs=jobs,
                 create_only=create_only)


@main.command()
@study_name_option("The study to continue.")
@storage_option()
@jobs_option()
@quiet_option()
@config_options
@_friendly_errors
def resume(study_name: str, storage: str, jobs: int, quiet: bool, **values: Any) -> None:
    """Continue a study from its stored configuration.

    Only --iterations, --device, --n-workers, --save and --save-ckpt may differ from the stored
    options; any other option given must equal the stored value.
    """
    from optnas.studies.search import continue_search

    continue_search(storage, study_name, given_config(values), echo=click.echo, progress=not quiet, n_jobs=jobs)


@main.command()
@study_name_option("The study to join.")
@storage_option("Optuna storage URL shared by all workers (PostgreSQL or MySQL for many machines).")
@device_option(default=None, help="Torch device of this worker, e.g. cuda:1 [default: the stored one].")
@click.option("--n-workers", type=click.IntRange(0), default=None,
              help="Data-loading worker processes of this worker [default: the stored value].")
@threads_option("Torch CPU threads of this worker [default: the stored value, else one per physical core].")
@jobs_option()
@quiet_option()
@_friendly_errors
def worker(study_name: str, storage: str, device: str | None, n_workers: int | None, threads: int | None,
           jobs: int, quiet: bool) -> None:
    """Join a study and evaluate its candidates until the budget of completed trials is spent.

    Any number of workers may run at once, on one or many machines, one per GPU: all of them
    derive the supernet, the data split and the candidate batches from the stored configuration.
    """
    from optnas.studies.search import continue_search

    given = given_config({"device": device, "n_workers": n_workers, "threads": threads})
    continue_search(storage, study_name, given, echo=click.echo, progress=not quiet, n_jobs=jobs)


@main.command("storage-proxy")
@storage_option("The database behind the proxy (SQLAlchemy URL).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=13000, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@_friendly_errors
def storage_proxy(storage: str, host: str, port: int) -> None:
    """Serve the storage over Optuna's gRPC proxy; workers then use --storage grpc://HOST:PORT.

    For very many workers: they share the proxy's database connections instead of each
    holding its own. Heartbeats (recovery of dead workers' trials) need a direct RDB URL.
    """
    from optnas.studies.storage import mask_password, serve_proxy

    click.echo(f"Optuna storage proxy for {mask_password(storage)} on grpc://{host}:{port} (Ctrl-C stops it)")
    try:
        serve_proxy(storage, host, port)
    except KeyboardInterrupt:
        pass


@main.command()
@storage_option()
@_friendly_errors
def studies(storage: str) -> None:
    """List the studies in a storage with their trial counts."""
    from optnas.studies.trials import describe_studies

    click.echo(describe_studies(storage))


@main.command()
@study_name_option()
@storage_option()
@click.option("--pareto", is_flag=True, help="Only the feasible Pareto set.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="Output format.")
@click.option("--n-exits", type=int, default=None,
              help="eemobilenetv3 studies: only architectures with this many intermediate exits (1-4).")
@_friendly_errors
def trials(study_name: str, storage: str, pareto: bool, fmt: str, n_exits: int | None) -> None:
    """Show the trials of a study: state, feasibility, stats and architecture."""
    from optnas.studies.trials import (
        add_ood_columns,
        format_rows,
        load_study_readonly,
        load_trials,
        trial_row,
        with_n_exits,
    )

    found = load_trials(storage, study_name, pareto=pareto)
    if n_exits is not None:
        found = with_n_exits(found, n_exits)
    rows = add_ood_columns([trial_row(trial) for trial in found], load_study_readonly(storage, study_name))
    click.echo(format_rows(rows, fmt))


@main.command("select")
@study_name_option()
@storage_option()
@click.option("-n", "n", default=3, show_default=True, type=int,
              help="Architectures to choose; the most accurate one is always the first.")
@click.option("--prefer", type=click.Choice(PREFERENCES),
              default="trade-off", show_default=True,
              help="The others: lowest in this figure (avg_macs, avg_latency: early-exit studies; latency: "
                   "studies that record it; top1_robust: robustness studies), or the best trade-offs on "
                   "normalised objectives.")
@click.option("--n-exits", "exits", type=click.IntRange(0), default=None,
              help="Only architectures with this many early exits (0: plain networks) [default: all].")
@click.option("--save", required=True, type=click.Path(file_okay=False),
              help="Folder that gets one net-<prefer>_<rank>/ per choice (net.subnet, net.stats, ckpt.pth).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="CSV listing the choices with every figure [default: SAVE/selection.csv].")
@_friendly_errors
def select_command(study_name: str, storage: str, n: int, prefer: str, exits: int | None, save: str,
                   csv_path: str | None) -> None:
    """Choose architectures from the feasible Pareto set of a study.

    A search bounded by --lmax has each chosen network timed on this machine (its
    --latency-runtime and --latency-threads): measured_latency, and how many meet the bound.
    """
    from optnas.figures import SUMMARY
    from optnas.studies.selection import export_selection, select_trials
    from optnas.studies.trials import format_rows, load_study_readonly

    study = load_study_readonly(storage, study_name)
    rows, latency_check = export_selection(study, select_trials(study, n, prefer, exits), prefer, save, csv_path)
    click.echo(format_rows(rows, "table", columns=("folder", "trial", "reason", *SUMMARY)))
    if latency_check is not None:
        click.echo(f"{latency_check['met']} of {latency_check['n']} chosen networks meet --lmax "
                   f"{latency_check['bound']:g} ms when timed here ({latency_check['runtime']}, "
                   f"{latency_check['threads']} thread(s)); measured_latency is the median.")


@main.command()
@storage_option()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; the dashboard has no authentication, keep it local.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--artifact-dir", type=click.Path(file_okay=False), default=None,
              help="Artifact folder [default: the one stored with the studies].")
@_friendly_errors
def dashboard(storage: str, host: str, port: int, artifact_dir: str | None) -> None:
    """Serve optuna-dashboard on the storage (trials, Pareto front, artifacts)."""
    from optnas.studies.dashboard import serve

    serve(storage, host=host, port=port, artifact_dir=artifact_dir, echo=click.echo)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def boards(as_json: bool) -> None:
    """List the boards --board takes: SRAM and flash (KB = 1024 bytes) from the datasheet, the
    reserve the firmware around the network keeps, and what is left for the network's TFLite
    Micro arena (bounds arena_kb) and flatbuffer (bounds tflite_kb)."""
    rows = [{**dataclasses.asdict(board), "arena_budget_kb": board.arena_budget_kb,
             "tflite_budget_kb": board.tflite_budget_kb} for board in BOARDS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'board':<10} {'SRAM':>5} {'flash':>6} {'reserve':>10} {'arena':>6} {'tflite':>7}  title, core")
    for board in BOARDS.values():
        reserve = f"{board.sram_reserve_kb}/{board.flash_reserve_kb}"
        click.echo(f"{board.name:<10} {board.sram_kb:>5} {board.flash_kb:>6} {reserve:>10} "
                   f"{board.arena_budget_kb:>6} {board.tflite_budget_kb:>7}  {board.title}, {board.core}")
    click.echo("KB; reserve = SRAM/flash kept by the firmware; arena and tflite = what bounds arena_kb and tflite_kb.")


@main.command()
@click.argument("subnet_file", type=click.Path(dir_okay=False))
@click.option("--n-classes", default=None, type=click.IntRange(2),
              help="Classes of the classifier head [default: the --latency-table's, else 1000].")
@click.option("--latency-table", type=click.Path(dir_okay=False), default=None,
              help="A lut.json of `optnas latency table`: also print the predicted latency (ms).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_friendly_errors
def profile(subnet_file: str, n_classes: int | None, latency_table: str | None, as_json: bool) -> None:
    """Print params, MACs and activations (millions) of a net.subnet at its own resolution.

    A mobilenetv3 subnet also gets flash_kb and sram_kb, the flash and peak SRAM of its int8
    network (KB = 1024 bytes; float32 equivalents too; see the README's Metrics), exit heads
    included for an eemobilenetv3 one, and (single-exit) arena_kb and tflite_kb, TensorFlow
    Lite Micro's arena and the .tflite file of `optnas export --format tflite --int8`.
    For an eemobilenetv3 subnet the other figures are the backbone's (with its final exit), followed
    by the cumulative MACs to leave at each exit and the params with every exit head. With
    --latency-table, `latency` is the whole network's predicted latency (every exit head run)
    and `exit_latency` the latency to leave at each exit.
    """
    from optnas.artifacts import read_subnet_file
    from optnas.latency.table import LatencyTable
    from optnas.networks.costs import profile
    from optnas.networks.exit_costs import exit_profile
    from optnas.networks.memory import memory
    from optnas.networks.tflm_memory import tflm_memory

    subnet = read_subnet_file(subnet_file)
    table = LatencyTable.load(latency_table) if latency_table is not None else None
    if n_classes is None:
        n_classes = table.n_classes if table is not None else 1000
    elif table is not None and table.n_classes != n_classes:
        raise ValueError(f"{latency_table} was built for {table.n_classes} classes, not --n-classes {n_classes}")
    figures = profile(subnet.backbone(), n_classes)
    exits = exit_profile(subnet, n_classes) if subnet.has_exits else None
    if exits is not None:
        figures.update({key: exits[key] for key in ("exit_stages", "head_params", "head_macs", "exit_macs")})
        figures["params_with_heads"] = exits["params"]
    figures.update(memory(subnet, n_classes))
    if exits is None:
        figures.update(tflm_memory(subnet, n_classes))
    if table is not None:
        figures["latency"] = table.predict(subnet)
        if exits is not None:
            figures["exit_latency"] = table.exit_latencies(subnet)
    if as_json:
        click.echo(json.dumps(figures))
        return
    click.echo(f"params            {figures['params']:10.4f} M")
    click.echo(f"macs              {figures['macs']:10.4f} M")
    click.echo(f"activations       {figures['activations']:10.4f} M")
    click.echo(f"peak_activations  {figures['peak_activations']:10.4f} M")
    click.echo(f"flash_kb          {figures['flash_kb']:10.1f} KB  int8 ({figures['flash_kb_float32']:.1f} KB float32)")
    click.echo(f"sram_kb           {figures['sram_kb']:10.1f} KB  int8 ({figures['sram_kb_float32']:.1f} KB float32)")
    if exits is None:
        click.echo(f"arena_kb          {figures['arena_kb']:10.1f} KB  TFLite Micro arena "
                   f"(activations {figures['arena_head_kb']:.1f} + persistent {figures['arena_tail_kb']:.1f})")
        click.echo(f"tflite_kb         {figures['tflite_kb']:10.1f} KB  int8 .tflite flatbuffer")
    if exits is not None:
        click.echo(f"params with heads {figures['params_with_heads']:10.4f} M")
        click.echo("cumulative MACs to leave at each exit (backbone so far + heads passed):")
        for index, stage in enumerate(exits["exit_stages"]):
            click.echo(f"exit {index + 1} (after stage {stage})  {exits['exit_macs'][index]:10.4f} M")
        click.echo(f"final exit              {exits['exit_macs'][-1]:10.4f} M")
    if table is not None:
        click.echo(f"latency           {figures['latency']:10.4f} ms (predicted by {latency_table})")
        for index, ms in enumerate(figures.get("exit_latency", [])):
            click.echo(f"  to leave at exit {index + 1}   {ms:10.4f} ms")


_layer_space_options = together(
    click.option("--width-mult", "widths", multiple=True, type=click.Choice([str(w) for w in WIDTH_MULTS]),
                 help=f"Width multiplier(s) of the supernet; repeat for several [default: {DEFAULT_WIDTH_MULT}]."),
    resolution_options("Lowest resolution of the searches the table serves."),
    click.option("--n-classes", default=10, show_default=True, type=click.IntRange(2),
                 help="Classes of the classifier (10: the digits default; a search refuses a table built "
                      "for another count)."),
    click.option("--exits", is_flag=True, help="Also the early-exit heads of eemobilenetv3 searches."),
    click.option("--calibration", "n_calibration", default=8, show_default=True, type=click.IntRange(1),
                 help="Whole networks timed end to end to fit the table's overhead."),
    seed_option("Seed of the calibration networks."),
)


def _progress_bars(quiet: bool) -> Callable[[str, int, int], None] | None:
    """One tqdm bar per stage (export, layers, calibration) for the latency commands' progress callbacks."""
    if quiet:
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="item")
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _layer_space(widths: tuple[str, ...], low_res: int, high_res: int, rstep: int, n_classes: int, exits: bool,
                 n_calibration: int, seed: int) -> Any:
    """The :class:`~optnas.latency.layers.LayerSpace` of the latency commands' options."""
    from optnas.latency.layers import LayerSpace
    from optnas.spaces import MobileNetV3Space

    resolutions = MobileNetV3Space.from_range(low_res, high_res, rstep).resolutions
    return LayerSpace(width_mults=tuple(float(w) for w in widths) or (DEFAULT_WIDTH_MULT,),
                      resolutions=tuple(resolutions), n_classes=n_classes, exits=exits,
                      n_calibration=n_calibration, seed=seed)


@main.group()
def latency() -> None:
    """Latency in milliseconds on a device: build a layer table, time networks.

    \b
    On this machine:     optnas latency table --out lut.json
    On another device:   optnas latency layers DIR; copy DIR to the device and run
                         python DIR/device.py DIR --out lut.json (needs numpy and onnxruntime)
    Then search with     optnas search --latency-table lut.json --sec-obj latency / --lmax MS
    """


@latency.command("table")
@_layer_space_options
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnxruntime", show_default=True,
              help="Where layers are timed: onnxruntime's CPU provider or PyTorch eager mode.")
@threads_option("CPU threads of the runtime.", default=1)
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The table (lut.json); an unfinished one with the same runtime and threads is resumed.")
@quiet_option("No progress.")
@_friendly_errors
def latency_table_command(widths: tuple[str, ...], low_res: int, high_res: int, rstep: int, n_classes: int,
                          exits: bool, n_calibration: int, seed: int, runtime: str, threads: int, out: str,
                          quiet: bool) -> None:
    """Time every layer configuration of the MobileNetV3 space on this machine into a latency table.

    Each layer (stem, every MBConv by stage, kernel, expand ratio and input size, the head, the
    exit heads with --exits) is timed once at batch 1 (warm-up, interleaved repeats until the
    median is stable); a few whole networks fit the overhead. The table records the runtime,
    its version, the threads, the CPU and the date.
    """
    from optnas.latency.build import build_table

    space = _layer_space(widths, low_res, high_res, rstep, n_classes, exits, n_calibration, seed)
    table = build_table(out, space, runtime=runtime, threads=threads, progress=_progress_bars(quiet) or False)
    click.echo(f"{out}: {len(table['layers'])} layers, overhead {table['overhead_ms']:.4f} ms "
               f"({table['runtime']} {table['runtime_version']}, {table['threads']} thread(s), {table['device']})")


@latency.command("layers")
@click.argument("folder", type=click.Path(file_okay=False))
@_layer_space_options
@quiet_option("No progress.")
@_friendly_errors
def latency_layers_command(folder: str, widths: tuple[str, ...], low_res: int, high_res: int, rstep: int,
                           n_classes: int, exits: bool, n_calibration: int, seed: int, quiet: bool) -> None:
    """Write every layer configuration as an ONNX file, for a device that cannot run optnas.

    FOLDER gets layers/*.onnx, calibration/*.onnx (whole networks), manifest.json and
    device.py. Copy FOLDER to the device and run `python FOLDER/device.py FOLDER --out lut.json`
    there (Python, numpy and onnxruntime only); search here with --latency-table lut.json.
    """
    from optnas.latency.layers import write_layer_folder

    space = _layer_space(widths, low_res, high_res, rstep, n_classes, exits, n_calibration, seed)
    manifest = write_layer_folder(folder, space, progress=_progress_bars(quiet))
    click.echo(f"{folder}: {len(manifest['layers'])} layers, {len(manifest['calibration'])} calibration networks; "
               f"on the device: python {Path(folder) / 'device.py'} {folder} --out lut.json")


@latency.command("measure")
@click.argument("subnet_file", type=click.Path(dir_okay=False))
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnxruntime", show_default=True,
              help="Where the network is timed.")
@threads_option("CPU threads of the runtime.", default=1)
@click.option("--n-classes", default=10, show_default=True, type=click.IntRange(2), help="Classes of the classifier.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_friendly_errors
def latency_measure_command(subnet_file: str, runtime: str, threads: int, n_classes: int, as_json: bool) -> None:
    """Time a net.subnet end to end on this machine at batch 1: median and 90th percentile (ms).

    Weights do not change latency, so the network is built with fresh ones.
    """
    from optnas.artifacts import read_subnet_file
    from optnas.latency.measure import measure_subnet

    timing = measure_subnet(read_subnet_file(subnet_file), n_classes, runtime=runtime, threads=threads)
    if as_json:
        click.echo(json.dumps(timing))
        return
    click.echo(f"latency {timing['latency_ms']:.4f} ms (median), p90 {timing['p90_ms']:.4f} ms, "
               f"{timing['repeats']} runs ({runtime}, {threads} thread(s))")


@main.group()
def supernet() -> None:
    """Supernet tools."""


@supernet.command("train")
@click.option("--dataset", default="digits", show_default=True, help="Dataset (see `optnas search --help`).")
@click.option("--data", default=None, help="Folder holding the dataset files.")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1),
              help="Epochs in all, --warmup-epochs included.")
@click.option("--warmup-epochs", default=None, type=click.IntRange(0),
              help="Epochs training the largest network alone before the sandwich rule [default: half of --epochs].")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint file; an existing one is resumed from its last epoch.")
@click.option("--width-mult", default=str(DEFAULT_WIDTH_MULT), show_default=True,
              type=click.Choice([str(width) for width in WIDTH_MULTS]),
              help="Width multiplier.")
@resolution_options()
@click.option("--n-classes", default=None, type=click.IntRange(2), help="Classes [default: the dataset's].")
@click.option("--vld-size", default=None, type=click.IntRange(1), help="Held-out training images.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(2),
              help="Images per step over all processes (under torchrun each of N processes takes 1/N of them).")
@device_option(help="Torch device (under torchrun: cpu, or cuda for one GPU per process).")
@threads_option()
@seed_option("Seed.")
@_friendly_errors
def supernet_train(dataset: str, data: str | None, epochs: int, warmup_epochs: int | None, out: str,
                   width_mult: str, low_res: int, high_res: int, rstep: int, n_classes: int | None,
                   vld_size: int | None, batch_size: int, device: str, threads: int | None, seed: int) -> None:
    """Train an OFA MobileNetV3 supernet from scratch.

    The largest network trains alone first (--warmup-epochs), then the sandwich rule trains it
    with the smallest and two random subnets, which learn from its predictions (in-place
    distillation). Prints the validation top1 of the largest and smallest subnets and the
    recipe, which the checkpoint records too. Whether the supernet ranks subnets as training
    them would: benchmarks/bench_supernet_truth.py (see the README).

    Under `torchrun --nproc_per_node N -m optnas supernet train ...` the N processes train
    data-parallel (gloo on the CPU, NCCL on GPUs) with the same recipe; the first one prints
    and writes --out, which resumes with any number of processes.
    """
    from optnas.data.datasets import load_dataset
    from optnas.networks.supernet import build_supernet
    from optnas.spaces import MobileNetV3Space
    from optnas.training.distributed import check_batch_split, current_ranks, launched_process_group, launched_ranks
    from optnas.training.loop import set_threads
    from optnas.training.supernet import train_supernet

    # Before the processes meet: one that fails while another is still joining leaves it a connection error.
    check_batch_split(batch_size, launched_ranks().size)
    set_threads(threads)
    space = MobileNetV3Space.from_range(low_res, high_res, rstep, width_mult=float(width_mult))
    splits = load_dataset(dataset, data, vld_size=vld_size, seed=seed)
    network = build_supernet(n_classes or splits.n_classes, float(width_mult))
    with launched_process_group(device) as device:
        summary = train_supernet(network, splits, epochs=epochs, warmup_epochs=warmup_epochs, out_path=Path(out),
                                 device=device, seed=seed, batch_size=batch_size,
                                 resolutions=tuple(space.resolutions))
        if not current_ranks().main:
            return
    click.echo(json.dumps(summary, indent=2, default=str))
    click.echo("Check that its inherited accuracies rank subnets as stand-alone training does: search with "
               f"--supernet-path {out}, then python benchmarks/bench_supernet_truth.py (README: "
               "'Does the supernet tell the truth?').", err=True)


@main.command("train")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(0),
              help="Training epochs (0: only recalibrate BN and evaluate the starting weights).")
@click.option("--dataset", default=None,
              help="Dataset [default: the search's, from FOLDER/source.json, else digits].")
@click.option("--data", default=None, help="Folder holding the dataset files [default: the search's].")
@click.option("--vld-size", default=None, type=click.IntRange(1),
              help="Validation images held out of the training split [default: the search's].")
@click.option("--n-classes", default=None, type=click.IntRange(2),
              help="Classes [default: the search's or the dataset's].")
@click.option("--supernet-path", default=None, type=click.Path(dir_okay=False),
              help="Supernet to inherit weights from when FOLDER has no ckpt.pth "
                   "[default: the one the search used, from FOLDER/source.json].")
@click.option("--resume", is_flag=True, help="Continue from FOLDER/train-state.pth (written after every epoch).")
@click.option("--learning-rate", default=0.01, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Initial SGD learning rate (cosine schedule, one step per epoch).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(2), help="Images per step.")
@device_option()
@threads_option()
@seed_option("Seed of split, shuffling and dropout [default: the search's, else 0].", default=None)
@quiet_option("No progress bar.")
@_friendly_errors
def train_command(folder: str, epochs: int, dataset: str | None, data: str | None, vld_size: int | None,
                  n_classes: int | None, supernet_path: str | None, resume: bool, learning_rate: float,
                  batch_size: int, device: str, threads: int | None, seed: int | None, quiet: bool) -> None:
    """Train a chosen architecture (a folder of `optnas select`) to convergence.

    Starts from FOLDER/ckpt.pth when the search kept it, else from the weights inherited from
    the supernet; writes FOLDER/train-state.pth every epoch, then FOLDER/final.pth and the final
    FOLDER/net.stats (top1 on the validation split, top1_test on the test split, in %).
    Early-exit networks train backbone and heads with the joint loss of every exit and are
    scored with their thresholds (avg_macs, exit_ratios, exit_top1 too).
    """
    from optnas.artifacts import read_source, source_defaults
    from optnas.data.catalog import recorded_classes
    from optnas.training.final import train_final
    from optnas.training.loop import set_threads

    set_threads(threads)
    given = {"dataset": dataset, "data": data, "vld_size": vld_size, "n_classes": n_classes, "seed": seed}
    chosen = {**source_defaults(folder), **{key: value for key, value in given.items() if value is not None}}
    # A folder tree edited since the search would relabel its classes: refused in one line.
    recorded_classes(read_source(folder), chosen.get("dataset", "digits"), chosen.get("data"))
    stats = train_final(
        folder, epochs=epochs, dataset=chosen.get("dataset", "digits"), data_dir=chosen.get("data"),
        vld_size=chosen.get("vld_size"), n_classes=chosen.get("n_classes"), supernet_path=supernet_path,
        resume=resume, lr=learning_rate, batch_size=batch_size, device=device, seed=chosen.get("seed", 0),
        progress=not quiet, echo=click.echo,
    )
    # An early-exit network's cost per image is its expected MACs under its thresholds.
    costs = f"   avg_macs {stats['avg_macs']:.4f} M" if "avg_macs" in stats else ""
    click.echo(f"top1 (validation) {stats['top1']:.2f} %   top1_test {stats['top1_test']:.2f} %   "
               f"params {stats['params']:.4f} M   macs {stats['macs']:.4f} M{costs}")


@main.command("export")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "tflite"]), default="onnx",
              show_default=True,
              help="onnx (checked with onnxruntime), torchscript, or tflite: a fully-int8 TFLite flatbuffer for "
                   "microcontrollers, scored in TFLite Micro (needs --int8, the only kind written; pip install "
                   "'optnas[tflite]').")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(7, 20), help="ONNX opset version.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="File to write [default: FOLDER/net.onnx, FOLDER/net.pt or FOLDER/net.int8.tflite].")
@click.option("--dataset", default=None,
              help="Dataset whose test images check the export [default: the search's, else digits].")
@click.option("--data", default=None, help="Folder holding the dataset files [default: the search's].")
@click.option("--n-check", default=64, show_default=True, type=click.IntRange(1),
              help="Test images the exported file is checked on.")
@click.option("--atol", default=1e-4, show_default=True, type=click.FloatRange(min=0),
              help="Largest absolute difference of any output allowed between the file and PyTorch.")
@device_option(help="Device of the PyTorch reference run (the exported file is checked on the CPU).")
@click.option("--latency-table", type=click.Path(dir_okay=False), default=None,
              help="lut.json whose predicted latency is recorded beside the measured one [default: the search's].")
@threads_option("onnxruntime threads when the ONNX file is timed [default: the search's --latency-threads, else 1]; "
                "with --format tflite, processes that run TFLite Micro on the test images [default: one per core].")
@click.option("--int8", is_flag=True,
              help="Also write FOLDER/net.int8.onnx (static int8 quantization, QDQ, per-channel weights) and "
                   "score both files on the test split into FOLDER/export-onnx-int8.json; with --format tflite, "
                   "required: the int8 flatbuffer and FOLDER/export-tflite-int8.json.")
@click.option("--calib-images", default=256, show_default=True, type=click.IntRange(1),
              help="Training images that calibrate --int8's activation ranges (ONNX and TFLite).")
@click.option("--max-drop", default=2.0, show_default=True, type=float,
              help="Warn when --int8 loses more test top1 than this (points).")
@seed_option("Draws the calibration images [default: the search's, else 0].", default=None)
@click.option("--board", type=click.Choice(tuple(BOARDS)), default=None,
              help="--format tflite: refuse (exit 2, nothing written) a network whose measured TFLite Micro arena "
                   "and file, with the board's reserves, exceed its SRAM or flash (see `optnas boards`) "
                   "[default: the search's --board].")
@_friendly_errors
def export_command(folder: str, fmt: str, opset: int, out: str | None, dataset: str | None, data: str | None,
                   n_check: int, atol: float, device: str, latency_table: str | None, threads: int | None,
                   int8: bool, calib_images: int, max_drop: float, seed: int | None, board: str | None) -> None:
    """Export a chosen network (FOLDER of `optnas select`, after `optnas train`) to a deployable file.

    The file maps a batch of normalised images `image` (N x 3 x r x r) to the logits `logits`
    (early-exit networks: logits_1..logits_K of the K exits, final last, and confidence_1..
    confidence_K-1 of the intermediate ones); it is run on real test images after export and
    every output must match PyTorch within --atol. An ONNX file is then timed in onnxruntime at
    batch 1, and FOLDER/export-onnx.json records latency_ms (median) beside predicted_latency_ms
    (the search's latency table, or --latency-table). With --int8, FOLDER/net.int8.onnx is the
    quantized file and FOLDER/export-onnx-int8.json its test top1 beside the float file's, the
    argmax agreement of the two, their sizes and latencies.

    With --format tflite --int8, FOLDER/net.int8.tflite is a fully-int8 TFLite flatbuffer (int8
    input, weights, activations and logits; ops CONV_2D, DEPTHWISE_CONV_2D, PAD, HARD_SWISH,
    MEAN, MUL, ADD, FULLY_CONNECTED), run image by image in TensorFlow Lite Micro's interpreter
    on the whole test split; FOLDER/export-tflite-int8.json records top1_float, top1_tflm, drop,
    agreement, flatbuffer_bytes, arena_bytes (TFLM's arena: head and tail; arena_required_bytes,
    the smallest arena it builds in), the op counts, and the input's quantization and the
    normalisation a device applies. A module TFLite Micro has no operator for is refused and
    nothing is written. --opset, --n-check, --atol, --latency-table and --device are for ONNX
    and TorchScript files.
    """
    from optnas.artifacts import read_source, source_defaults
    from optnas.export import export_network

    source = source_defaults(folder)
    searched = read_source(folder).get("config", {})
    if fmt == "tflite":
        _export_tflite(folder, out, dataset or source.get("dataset", "digits"), data or source.get("data"), int8,
                       calib_images, max_drop, source.get("seed", 0) if seed is None else seed, threads, source,
                       board or searched.get("board"))
        return
    report = export_network(folder, fmt, out=out, opset=opset, dataset=dataset or source.get("dataset", "digits"),
                            data_dir=data or source.get("data"), n_check=n_check, atol=atol, device=device,
                            latency_table=latency_table or searched.get("latency_table"),
                            threads=threads or searched.get("latency_threads", 1), int8=int8,
                            calib_images=calib_images, seed=source.get("seed", 0) if seed is None else seed,
                            vld_size=source.get("vld_size"), split_seed=source.get("seed", 0))
    click.echo(f"{report['file']}: {fmt}, max |difference| from PyTorch {report['max_abs_diff']:.2e} "
               f"on {report['n_images']} test images")
    if "latency_ms" in report:
        predicted = (f", predicted {report['predicted_latency_ms']:.4f} ms by the latency table"
                     if "predicted_latency_ms" in report else "")
        click.echo(f"latency in onnxruntime ({report['latency_threads']} thread(s)): {report['latency_ms']:.4f} ms "
                   f"median, p90 {report['latency_p90_ms']:.4f} ms{predicted}")
    if int8:
        q = report["int8"]
        click.echo(f"{q['file']}: int8 top1 {q['top1_float']:.2f} % -> {q['top1_int8']:.2f} % (drop {q['drop']:.2f} "
                   f"points, argmax agreement {q['argmax_agreement']:.3f}), {q['size_bytes_float'] / 2**20:.2f} -> "
                   f"{q['size_bytes_int8'] / 2**20:.2f} MiB, {q['latency_ms_float']:.4f} -> "
                   f"{q['latency_ms_int8']:.4f} ms")
        if q["drop"] > max_drop:
            click.echo(f"warning: int8 loses {q['drop']:.2f} points of test top1 (more than --max-drop {max_drop:g})",
                       err=True)


def _export_tflite(folder: str, out: str | None, dataset: str, data: str | None, int8: bool, calib_images: int,
                   max_drop: float, seed: int, processes: int | None, source: dict[str, Any],
                   board: str | None) -> None:
    """`optnas export --format tflite --int8`: write, score and print (see export_command)."""
    from optnas.export import export_tflite

    if not int8:
        raise click.UsageError("--format tflite writes fully-int8 flatbuffers only: add --int8")
    report = export_tflite(folder, out=out, dataset=dataset, data_dir=data, calib_images=calib_images, seed=seed,
                           vld_size=source.get("vld_size"), split_seed=source.get("seed", 0), processes=processes,
                           board=None if board is None else BOARDS[board])
    ops = ", ".join(f"{name} {count}" for name, count in report["ops"].items())
    click.echo(f"{report['file']}: fully-int8 TFLite, {report['flatbuffer_bytes']:,} B; ops {ops}")
    click.echo(f"TFLite Micro arena {report['arena_bytes']:,} B used (activations {report['arena_head_bytes']:,} + "
               f"persistent {report['arena_tail_bytes']:,}), {report['arena_required_bytes']:,} B required to build")
    click.echo(f"test top1 float {report['top1_float']:.2f} % -> TFLM int8 {report['top1_tflm']:.2f} % (drop "
               f"{report['drop']:.2f} points, argmax agreement {report['agreement']:.3f}) on {report['n_images']} "
               f"images, {report['seconds']:.1f} s")
    if "board" in report:
        fit = report["board"]
        click.echo(f"fits {fit['name']}: {fit['sram_used_kb']:.1f} of {fit['sram_kb']} KB SRAM, "
                   f"{fit['flash_used_kb']:.1f} of {fit['flash_kb']} KB flash (with the reserves of `optnas boards`)")
    if report["drop"] > max_drop:
        click.echo(f"warning: int8 loses {report['drop']:.2f} points of test top1 (more than --max-drop {max_drop:g})",
                   err=True)


@main.command("report")
@study_name_option()
@storage_option()
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the PNG plots and index.html.")
@click.option("-n", "n", default=3, show_default=True, type=int,
              help="Architectures to choose and mark, as `optnas select -n`.")
@click.option("--prefer", type=click.Choice(PREFERENCES),
              default="trade-off", show_default=True, help="How the others are chosen, as `optnas select --prefer`.")
@click.option("--upload/--no-upload", default=True, show_default=True,
              help="Attach each plot to the study as an artifact, so that optuna-dashboard shows it.")
@_friendly_errors
def report_command(study_name: str, storage: str, out: str, n: int, prefer: str, upload: bool) -> None:
    """Plot a study (Pareto front with the chosen architectures, hypervolume and predictor tau per
    iteration, exit ratios of early-exit studies) into PNG files and an HTML page."""
    from optnas.studies.report import write_report
    from optnas.studies.trials import load_study_readonly

    report = write_report(load_study_readonly(storage, study_name), out, n=n, prefer=prefer, upload=upload)
    click.echo(f"{report['page']}: {', '.join(report['plots'])}; chosen trials {report['chosen']}")
    if report["uploaded"]:
        click.echo(f"Attached to the study as artifacts: {', '.join(report['uploaded'])}")


@main.command()
@study_name_option("The study of --trial.", required=False)
@storage_option()
@click.option("--trial", "trial_number", type=click.IntRange(0), default=None,
              help="A completed trial of the study: its network is rebuilt (or read from its ckpt.pth) and "
                   "the result is kept in the study (user attribute ood:trial:NNNNN and a study artifact).")
@click.option("--subnet", "subnet_file", type=click.Path(dir_okay=False), default=None,
              help="Instead of --trial: a net.subnet file, with --weights.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="The ckpt.pth of --subnet (a dict with 'state_dict', as --save-ckpt writes).")
@click.option("--dataset", default=None,
              help="cifar10c / cifar100c: read the published CIFAR-10-C / CIFAR-100-C .npy files from --data. "
                   "Otherwise the dataset whose test split is corrupted on the fly [default: the study's; "
                   "digits with --subnet].")
@click.option("--data", default=None,
              help="Folder of the dataset files (the CIFAR-C .npy files for cifar10c/cifar100c).")
@click.option("--corruptions", default="all", show_default=True,
              help="Comma-separated corruptions, or all: gaussian_noise, shot_noise, impulse_noise, "
                   "defocus_blur, glass_blur, motion_blur, zoom_blur, snow, frost, fog, brightness, "
                   "contrast, elastic_transform, pixelate, jpeg_compression.")
@click.option("--severities", default="1,2,3,4,5", show_default=True, help="Comma-separated severities (1-5).")
@click.option("--n-images", type=click.IntRange(1), default=None, help="Only the first test images [default: all].")
@seed_option("Seed of the on-the-fly corruptions.")
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@quiet_option()
@_friendly_errors
def ood(study_name: str | None, storage: str, trial_number: int | None, subnet_file: str | None,
        weights: str | None, dataset: str | None, data: str | None, corruptions: str, severities: str,
        n_images: int | None, seed: int, device: str, as_json: bool, quiet: bool) -> None:
    """Out-of-distribution error of a network: top-1 error (%) per corruption and severity, and the
    mean corruption error (mCE, the unnormalised mean over the 15 CIFAR-10-C corruptions x 5 severities)."""
    from optnas.data.corruptions import CORRUPTIONS
    from optnas.evaluation.ood import OODRequest, evaluate_subnet_ood, format_ood
    from optnas.studies.ood import evaluate_trial_ood

    names = CORRUPTIONS if corruptions == "all" else tuple(p.strip() for p in corruptions.split(",") if p.strip())
    try:
        levels = tuple(int(part) for part in severities.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--severities must be comma-separated integers 1-5, got {severities!r}") from None
    request = OODRequest(dataset=dataset, data=data, corruptions=names, severities=levels, n_images=n_images,
                         seed=seed, device=device, progress=not quiet)
    if (trial_number is None) == (subnet_file is None):
        raise ValueError("give either --trial (with --study-name) or --subnet (with --weights)")
    if trial_number is not None:
        if study_name is None:
            raise ValueError("--trial needs --study-name")
        from optnas.studies.trials import load_study_readonly

        study = load_study_readonly(storage, study_name)
        result = evaluate_trial_ood(study, trial_number, request)
    else:
        if weights is None:
            raise ValueError("--subnet needs --weights (a ckpt.pth with 'state_dict')")
        result = evaluate_subnet_ood(subnet_file, weights, request)
    click.echo(json.dumps(result, indent=2) if as_json else format_ood(result))


if __name__ == "__main__":
    main()
