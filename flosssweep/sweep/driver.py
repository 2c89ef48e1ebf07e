"""Run a sweep: Ray Tune over a sweep file, every trial recorded in MLflow (the driver's side).

    python -m flosssweep.run search_spaces/quickstart.yaml          # on this machine
    python flosssweep/run.py quickstart --dry-run                   # the trials it would run
    ray submit cluster/config.yaml flosssweep/run.py quickstart     # on a Ray cluster

`ray submit` copies this file alone to the head node and runs it there, so everything below the
command line lives in the installed `flosssweep` package; run as a script, this file only hands over
to `flosssweep.run.main`.

Exit status: 0 every trial finished (a diverged trial is a finished trial); 1 some trial failed or the
sweep was interrupted (Ctrl-C or SIGTERM; resume it with --resume); 2 the sweep file or the options
are invalid (a storage path that cannot be written, trials no node can hold, an unfinished launch of
the same sweep in the same folder); 3 the tracking store, the storage or the Ray cluster cannot be
reached. Nothing is launched unless every check of `sweep.preflight` passes, and a launch that is
refused or stops early never leaves its MLflow parent run RUNNING.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flosssweep.checks import OneLineParser, one_line, private_files, redact
from flosssweep.config import ConfigError
from flosssweep.names import ADAPTIVE_STATE, END_REASON, EXTENDS, RAY_ADDRESS_ENV, TAG_PREFIX
from flosssweep.protocol import LaunchFile
from flosssweep.sweep import lease, preflight, spec, watchdog
from flosssweep.sweep import storage as storage_paths
from flosssweep.tracking.store import TrackingStore, TrackingUnavailable
from flosssweep.tracking.summary import ui_page

LAUNCH_FILE = "flosssweep-launch.json"  # in the Ray experiment directory: what --resume needs
EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE = 1, 2, 3


EXIT_CODES = """exit status:
  0  every trial finished (a diverged trial is a finished trial)
  1  some trial failed, or the sweep was interrupted (Ctrl-C or SIGTERM: continue it with --resume)
  2  the sweep file or the options are invalid, or a check before the launch failed (nothing was started)
  3  the tracking store, the storage or the Ray cluster cannot be reached (nothing was started)"""


def parse_args(argv: list[str] | None = None, prog: str = "python -m flosssweep.run") -> argparse.Namespace:
    parser = OneLineParser(
        prog=prog,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a sweep file through Ray Tune, recording every trial in MLflow; at the end, "
        "the report of the sweep goes onto its parent run.",
    )
    parser.add_argument("sweep", help="sweep file path, or the name of a file in search_spaces/ (e.g. quickstart)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<this directory>/mlflow.db)",
    )
    parser.add_argument(
        "--storage-path",
        help="where Ray keeps trial checkpoints and experiment state (default: "
        f"${storage_paths.STORAGE_ENV}, else ./ray_results); on a cluster of several nodes an "
        "object-store URI such as s3://BUCKET/PATH, or a directory every node mounts",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the last interrupted launch of this sweep (finished trials are not rerun)",
    )
    parser.add_argument(
        "--extend",
        action="store_true",
        help="a new launch that adds to the experiment: an adaptive sweep starts from the posterior its "
        "recorded trials imply (rounds more), a grid sweep runs only the cells not recorded yet",
    )
    parser.add_argument(
        "--close",
        action="store_true",
        help="end the unfinished launches of this sweep in this storage folder (their driver "
        "died, or their storage was deleted): MLflow runs closed as KILLED; then a new launch "
        "can start",
    )
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once (overrides the file)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials it would run and exit")
    parser.add_argument(
        "--address",
        help="Ray address (default: a cluster running on this machine, else a new "
        "local instance; 'local' always starts a new one)",
    )
    parser.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of a new local Ray instance")
    parser.add_argument(
        "--report-out",
        metavar="DIR",
        help="also write the end-of-sweep report's tables and figures into DIR (as `flosssweep report --out DIR`)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="do not make the report at the end (python -m flosssweep.report makes it later)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="Ray's own output too (its status tables, hints and INFO lines)"
    )
    return parser.parse_args(argv)


def _refuse(message: str, code: int = EXIT_INVALID) -> int:
    print(f"flosssweep.run: error: {one_line(message)}", file=sys.stderr, flush=True)
    return code


@dataclass
class Launch:
    """One launch of a sweep as the driver runs it: where it is tracked and stored, its parent run,
    and, for --resume, the launch file it continues. Made once in `main`, handed to what follows."""

    sweep: spec.Sweep
    store: TrackingStore
    storage: str
    experiment_dir: str
    resumed: LaunchFile | None = None
    experiment_id: str = ""
    parent_run_id: str = ""
    verbose: bool = False
    seen: list[dict] | None = None  # --extend of an adaptive sweep: what earlier launches observed, per group
    extended: bool = False

    def file(self, study: dict | None) -> LaunchFile:
        return LaunchFile(
            self.parent_run_id,
            self.experiment_id,
            self.store.uri,
            self.sweep.source,
            self.sweep.fingerprint(),
            study,
            self.sweep.left_out if self.extended else None,
        )

    def search_options(self, study: dict | None) -> dict:
        """What `search.searcher` takes besides the sweep."""
        options = dict(study or {})
        if self.sweep.adaptive is not None:
            options.update(seen=self.seen, tag=(self.store, self.parent_run_id))
        return options


def _filesystem(path: str):
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def _write_launch(experiment_dir: str, launch: LaunchFile) -> None:
    fs, path = _filesystem(experiment_dir)
    fs.create_dir(path)
    with fs.open_output_stream(f"{path}/{LAUNCH_FILE}") as out:
        out.write(launch.dumps().encode())


def _read_launch(experiment_dir: str) -> LaunchFile | None:
    fs, path = _filesystem(experiment_dir)
    try:
        with fs.open_input_stream(f"{path}/{LAUNCH_FILE}") as stream:
            return LaunchFile.loads(stream.read().decode())
    except (FileNotFoundError, OSError):
        return None


def _init_ray(args: argparse.Namespace) -> None:
    from flosssweep.sweep import quiet
    from flosssweep.sweep.loopback import loopback_only, ray_running

    options = quiet.configure(args.verbose)
    if not ray_running():
        # a Ray of its own (no address, or `local`) listens on 127.0.0.1 only, as set before `import ray`
        with loopback_only(args.address in (None, "local") and not os.environ.get(RAY_ADDRESS_ENV)):
            import ray

            if args.address == "local":
                ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, **options)
            elif args.num_cpus is not None and args.address is None:
                ray.init(num_cpus=args.num_cpus, **options)
            else:
                ray.init(address=args.address, **options)
    if not args.verbose:
        quiet.once_ray_is_imported()


def trainable(sweep, launch: str):
    """The trial function with what every trial shares; `launch` (the parent run id) tells a
    trial's checkpoints from those an earlier launch of the same sweep left in the experiment."""
    from ray import tune

    from flosssweep import provenance
    from flosssweep.sweep.worker import run_trial  # Parquet and NumPy: after the first line

    function = tune.with_parameters(
        run_trial,
        base=sweep.base,
        sweep_name=sweep.name,
        launch=launch,
        checkpoint_seconds=sweep.checkpoint_seconds,
        provenance=provenance.collect(),
        metric=sweep.ray_metric_name,
    )
    return tune.with_resources(function, {"cpu": sweep.resources["cpu"], "gpu": sweep.resources["gpu"]})


def build_tuner(sweep, storage: str, callback, launch: str, search_options: dict | None = None, verbose: int = 0):
    """`search_options`: what `search.searcher` takes besides the sweep (an Optuna search's study, an
    adaptive search's earlier observations and parent run)."""
    from ray import tune

    from flosssweep.sweep import search
    from flosssweep.sweep.callbacks import DiskWatch, TerminalProgress

    tune_config = tune.TuneConfig(
        metric=sweep.ray_metric_name,
        mode=sweep.mode,
        search_alg=search.searcher(sweep, **(search_options or {})),
        scheduler=search.scheduler(sweep),
        num_samples=sweep.tune_num_samples(),
        reuse_actors=True,
    )
    run_config = tune.RunConfig(
        name=sweep.name,
        storage_path=storage,
        verbose=verbose,
        callbacks=[callback, TerminalProgress(list(sweep.space), sweep.base), DiskWatch(storage)],
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
    )  # see _Checkpoints
    return tune.Tuner(
        trainable(sweep, launch),
        param_space=search.param_space(sweep),
        tune_config=tune_config,
        run_config=run_config,
    )


def _tuner(launch: Launch, max_concurrent_flag: bool):
    """The Tuner of a new launch (its launch file written), or of the one being resumed."""
    from ray import tune

    sweep = launch.sweep
    # Trials bring their own history; Ray's warning about result files an interrupted driver never
    # wrote is no news here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if launch.resumed is not None:
        print(
            f"resuming sweep {sweep.name} from {launch.experiment_dir} (MLflow parent run {launch.parent_run_id})",
            flush=True,
        )
        if max_concurrent_flag:
            print(
                "note: --max-concurrent does not change a resumed launch (Ray restores its search as it was)",
                flush=True,
            )
        return tune.Tuner.restore(
            launch.experiment_dir,
            trainable=trainable(sweep, launch.parent_run_id),
            resume_unfinished=True,
            resume_errored=True,
        )
    from flosssweep import provenance
    from flosssweep.sweep import search
    from flosssweep.sweep.callbacks import MLflowCallback
    from flosssweep.tracking.recorder import SweepRecorder

    callback = MLflowCallback(
        SweepRecorder(
            launch.store,
            launch.experiment_id,
            launch.parent_run_id,
            sweep.name,
            sweep.base,
            list(sweep.space),
            run_tags=provenance.mlflow_source_tags(provenance.collect()),
        )
    )
    study = search.study(sweep, launch.store, launch.experiment_dir, launch.parent_run_id)
    tuner = build_tuner(
        sweep, launch.storage, callback, launch.parent_run_id, launch.search_options(study), verbose=int(launch.verbose)
    )
    _write_launch(launch.experiment_dir, launch.file(study))
    print(
        f"sweep {sweep.name}: {'at most ' if sweep.adaptive else ''}{sweep.num_trials()} trials, "
        f"MLflow {redact(launch.store.uri)} "
        f"(experiment {sweep.name}, parent run {launch.parent_run_id})",
        flush=True,
    )
    return tuner


def _resolved_base(sweep) -> str:
    """Every key the sweep's trials use (those of its task, or of each task it varies), the varied ones
    by their axis; '*' marks a value that is not the default."""
    from flosssweep import config as cfg

    base = sweep.base_values()
    tasks = sweep.space["task.name"].values if "task.name" in sweep.space else [base["task"]["name"]]
    used = {key for task in tasks for key in cfg.applicable_keys({"task": {"name": task}})}
    values = {key: value for key, value in cfg.flatten(base).items() if key in used}
    width = max(map(len, values))
    lines = [
        f"  {'*' if value != cfg.SCHEMA[key].default else ' '} {key:<{width}}  "
        + (f"varied: {sweep.space[key].describe()}" if key in sweep.space else str(value))
        for key, value in values.items()
    ]
    return "  base of every trial (* = not the default):\n" + "\n".join(lines)


def _report(launch: Launch, out: str | None) -> None:
    """The sweep's report onto its parent run (tables, figures, summary), against the forcing
    interval for a sweep over task.tau, else the delay; a report that cannot be made is a note, not a
    failed sweep."""
    from flosssweep.config import column_name
    from flosssweep.report.common import ReportError
    from flosssweep.report.make import FromStore, ReportSettings, make_report

    x = column_name("task.tau" if "task.tau" in launch.sweep.space else "task.delay")
    print("", flush=True)
    # An --extend launch adds to what earlier launches recorded: its report covers them all.
    source = (
        FromStore(launch.store, experiment=launch.sweep.name)
        if launch.extended
        else FromStore(launch.store, run_id=launch.parent_run_id)
    )
    try:
        settings = ReportSettings(x=x, log=True, out=Path(out) if out else None)
        report = make_report(source, settings)
    except ReportError as err:
        print(f"note: the report could not be completed ({err}); the sweep itself is recorded", flush=True)
        return
    if report.log_error:
        print(f"note: the report could not be logged to the parent run ({report.log_error})", flush=True)


def _extend(launch: Launch) -> None:
    """What an --extend launch starts from: the trials the experiment recorded, whichever launch ran
    them, with this sweep's configuration (a trial of another base is another configuration). An
    adaptive sweep seeds its groups' observations with them; a grid sweep leaves their cells out."""
    from flosssweep import config as cfg
    from flosssweep.sweep.adaptive import seen_from

    sweep = launch.sweep
    recorded = [
        trial
        for trial in launch.store.recorded_trials(sweep.name)
        if cfg.config_key(sweep.trial_config(trial["trial_config"])) == trial["config_key"]
    ]
    if sweep.adaptive is not None:
        launch.seen = seen_from(recorded, sweep.adaptive.key, sweep.groups(), sweep.base_values()["seed"])
        held = sum(len(s) for s in launch.seen)
        print(f"extending sweep {sweep.name}: its groups start from {held} recorded trial(s)", flush=True)
        return
    done = {(t["config_key"], t["seed"]) for t in recorded if t["members"] >= sweep.base_values()["ensemble"]}
    left_out = []
    for cell in sweep.cells():
        config = sweep.trial_config(cell)
        if (cfg.config_key(config), config["seed"]) in done:
            left_out.append(cell)
    sweep.left_out = left_out
    print(
        f"extending sweep {sweep.name}: {len(left_out)} cell(s) already recorded are left out, "
        f"{sweep.num_trials()} trial(s) to run",
        flush=True,
    )


def _gcs_address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


def _close_dead(launch: Launch, held, why: str) -> None:
    """What the watchdog does first when Ray died under the launch: runs closed, resumable, lease gone."""
    launch.store.end_parent(launch.parent_run_id, "KILLED", {END_REASON: why})
    held.release()


def _close(args, sweep, launch_dir: Path, experiment_dir: str) -> int:
    launch = _read_launch(experiment_dir)
    store = TrackingStore(launch.tracking_uri) if launch else TrackingStore.resolve(args.tracking_uri, launch_dir)
    try:
        lease.check_free(experiment_dir, "--close")
    except preflight.Refused as err:
        return _refuse(str(err), err.code)
    try:
        store.check()
    except TrackingUnavailable as err:
        return _refuse(str(err), err.code)
    closed = store.close_launches(sweep.name, experiment_dir)
    if launch is not None:
        try:
            lease.mark_closed(experiment_dir)  # a stalled driver of the launch learns it at its next heartbeat
        except OSError:  # the runs are closed all the same; only a stalled driver would not be told
            pass
    print(
        f"closed {len(closed)} unfinished launch(es) of sweep {sweep.name} in {experiment_dir}"
        + (f": parent run(s) {', '.join(closed)}" if closed else "")
    )
    return 0


def main(argv: list[str] | None = None, *, prog: str = "python -m flosssweep.run") -> int:
    args = parse_args(argv, prog)
    private_files()  # the database, artifacts and launch file hold results and the tracking URI
    launch_dir = Path.cwd().resolve()
    try:
        sweep = spec.load(spec.locate(args.sweep))
    except ConfigError as err:
        return _refuse(str(err))
    except OSError as err:
        return _refuse(f"sweep: cannot read {args.sweep}: {err.strerror or err}")
    if args.max_concurrent is not None:
        if args.max_concurrent < 1:
            return _refuse(f"--max-concurrent: expected an integer >= 1, got {args.max_concurrent}")
        sweep.max_concurrent = args.max_concurrent
    try:
        preflight.check_options(args)
        if args.extend:
            preflight.check_extend(args, sweep)
    except preflight.Refused as err:
        return _refuse(str(err), err.code)
    if args.dry_run:
        print(sweep.describe())
        print(_resolved_base(sweep))
        return 0

    storage = storage_paths.resolve(args.storage_path, launch_dir)
    experiment_dir = f"{storage}/{sweep.name}"
    if not args.close:
        # the first line within a second or two of the command: the checks and Ray's start take longer
        print(
            f"{sweep.name}: {sweep.num_trials()} trials; checking storage and MLflow, then starting Ray...", flush=True
        )
    if args.close:
        return _close(args, sweep, launch_dir, experiment_dir)
    store = TrackingStore.resolve(args.tracking_uri, launch_dir)
    resumed = None
    if args.resume:
        resumed = _read_launch(experiment_dir)
        if resumed is None:
            return _refuse(
                f"--resume: no launch of sweep {sweep.name} under {storage} "
                "(start it without --resume, or pass the --storage-path it ran with)"
            )
        if resumed.fingerprint != json.loads(json.dumps(sweep.fingerprint())):
            return _refuse(
                f"--resume: {sweep.source} changed since the launch being resumed "
                "(restore the file, or start a new launch without --resume)"
            )
        if args.tracking_uri and store.uri != resumed.tracking_uri:
            return _refuse(
                f"--tracking-uri: expected {resumed.tracking_uri}, where this launch started (a resumed sweep "
                "keeps writing to its parent run)"
            )
        store = TrackingStore(resumed.tracking_uri)
        if resumed.extended is not None:  # an --extend launch resumed: the same cells left out
            sweep.left_out = resumed.extended
    launch = Launch(sweep, store, storage, experiment_dir, resumed, verbose=args.verbose)
    launch.extended = args.extend or (resumed is not None and resumed.extended is not None)
    try:
        preflight.check_storage(storage)
        preflight.check_ray_address(args.address)
        if preflight.dead_current_cluster(args.address):
            args.address = "local"
        store.check()
        if resumed is None:
            preflight.check_earlier_launch(_read_launch(experiment_dir), experiment_dir, args.sweep)
        else:
            lease.check_free(experiment_dir, "--resume")
            preflight.check_resumable(resumed, store)
            preflight.check_experiment_state(experiment_dir)
        if args.extend:
            _extend(launch)
            if sweep.num_trials() == 0:
                print(f"sweep {sweep.name}: every cell is recorded already; nothing to run", flush=True)
                return 0
    except TrackingUnavailable as err:
        return _refuse(str(err), err.code)
    except preflight.Refused as err:
        return _refuse(str(err), err.code)

    started = time.monotonic()
    try:
        _init_ray(args)
    except (ConnectionError, ValueError, RuntimeError) as err:
        return _refuse(f"Ray: {str(err).splitlines()[0]}", EXIT_UNAVAILABLE)
    except KeyboardInterrupt:  # nothing was opened yet: nothing to close
        return _refuse("interrupted while Ray was starting (nothing was launched)", EXIT_FAILED)
    try:
        storage_paths.check(storage)
    except storage_paths.StorageUnreachable as err:
        return _refuse(str(err))
    preflight.stop_on_sigterm()
    from ray import tune  # seconds to import: after the refusals

    from flosssweep.sweep.callbacks import StorageFull

    try:
        note = preflight.check_resources(sweep.resources)
    except preflight.Refused as err:
        return _refuse(str(err), err.code)
    if note:
        print(note, flush=True)
    if resumed is not None:
        if not tune.Tuner.can_restore(experiment_dir):
            return _refuse(
                f"--resume: {experiment_dir} holds no Ray experiment to resume (end that launch with --close)"
            )
        launch.parent_run_id, launch.experiment_id = resumed.parent_run_id, resumed.experiment_id
        try:
            store.reopen_parent(launch.parent_run_id)
        except TrackingUnavailable as err:
            return _refuse(str(err), EXIT_UNAVAILABLE)
    else:
        launch.experiment_id, launch.parent_run_id = store.start_parent(sweep, experiment_dir)
        if launch.extended:
            store.tag_run(launch.parent_run_id, {EXTENDS: "true"})
    # From here on the parent run is RUNNING: whatever happens, it is closed below.
    reason = full = unclosed = None
    # held, the launch is refused to --resume and --close; lost after a stall, this driver stops (lease.py)
    held = lease.Lease(experiment_dir, launch.parent_run_id, lambda now: watch.end(*lease.lost(now), EXIT_FAILED))
    watch = watchdog.Watchdog(_gcs_address(), lambda why: _close_dead(launch, held, why))
    try:
        held.acquire()
        watch.start()
        _tuner(launch, args.max_concurrent is not None).fit()
    except KeyboardInterrupt:
        reason = "interrupted"
    except (StorageFull, TrackingUnavailable) as err:  # a full disk under Ray's storage or MLflow's store
        reason = full = str(err)
    except BaseException as err:
        reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        raise
    finally:
        ended = store.outcome(launch.experiment_id, launch.parent_run_id)
        finished = ended["recorded"] + ended["stopped"]
        if sweep.adaptive is not None:  # its rounds decide how many trials: done once every group stopped
            total = finished + ended["error"] + ended["open"]
            searched = store.run_tags(launch.parent_run_id).get(ADAPTIVE_STATE) == "finished"
            complete = searched and not ended["open"] and reason is None
        else:
            total = sweep.num_trials()
            complete = finished + ended["error"] >= total and not ended["open"] and reason is None
        tags = {f"{TAG_PREFIX}{k}": str(v) for k, v in ended.items()}
        if complete:
            status = "FAILED" if ended["error"] else "FINISHED"
        else:
            status = "KILLED" if reason in (None, "interrupted") else "FAILED"
            tags[END_REASON] = reason or "interrupted"
        watch.stop()
        try:
            store.end_parent(launch.parent_run_id, status, tags)
            closed = "stopped and its runs closed"
        except Exception as err:  # noqa: BLE001 - a store that takes no more writes: said below, --close later
            closed = "stopped; its runs could not be closed (--close does it)"
            unclosed = f"MLflow took no writes ({one_line((str(err).strip().splitlines() or [''])[0])[:200]})"
        held.release()
    minutes = (time.monotonic() - started) / 60
    print(
        f"\nsweep {sweep.name}: {finished} of {total} trials finished"
        + (f" ({ended['stopped']} stopped early)" if ended["stopped"] else "")
        + f", {ended['error']} failed, {minutes:.1f} min"
    )
    if not complete:
        print(
            f"interrupted: continue with  python -m flosssweep.run {args.sweep} --resume"
            + (f" --storage-path {storage}" if args.storage_path else "")
        )
    elif not args.no_report and finished:
        _report(launch, args.report_out)
    env = "" if store == TrackingStore.default(launch_dir) else f"MLFLOW_TRACKING_URI={redact(store.uri)} "
    print(f"report:  {env}python -m flosssweep.report --run {launch.parent_run_id}")
    # The parent run's metrics page: T50 per group as its first charts, the run's name says them too.
    page = ui_page(launch.experiment_id, launch.parent_run_id)
    print(
        f"browse:  {redact(store.uri).rstrip('/')}/{page}"
        if store.is_server
        else f"browse:  mlflow ui --backend-store-uri {store.uri}   then http://127.0.0.1:5000/{page}"
    )
    if full or unclosed:  # room is the way out only where a disk is full
        advice = "make room, then --resume" if full else "--resume once MLflow takes writes"
        return _refuse(f"{full or unclosed}; the sweep was {closed} ({advice})", EXIT_FAILED)
    return 0 if complete and not ended["error"] else EXIT_FAILED
