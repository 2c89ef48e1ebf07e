"""Run a sweep: Ray Tune over a sweep file, every trial recorded in MLflow (the driver's side).

    python -m flosssweep.run search_spaces/quickstart.yaml          # on this machine
    python flosssweep/run.py quickstart --dry-run                   # the trials it would run
    ray submit cluster/config.yaml flosssweep/run.py quickstart     # on a Ray cluster

`ray submit` copies this file alone to the head node and runs it there, so everything below the
command line lives in the installed `flosssweep` package; run as a script, this file only hands over
to `flosssweep.run.main`.

Exit status: 0 every trial finished (a diverged trial is a finished trial); 1 some trial failed or the
sweep was interrupted (resume it with --resume); 2 the sweep file or the options are invalid;
3 the tracking store or the Ray cluster cannot be reached. Nothing is launched unless the sweep
file is valid and the tracking store answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


from flosssweep.config import ConfigError
from flosssweep.sweep import spec
from flosssweep.sweep.worker import TRAIN, run_trial
from flosssweep.names import TAG_PREFIX
from flosssweep.tracking import store

LAUNCH_FILE = "flosssweep-launch.json"  # in the Ray experiment directory: what --resume needs
EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE = 1, 2, 3

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line and exit status 2, like every other refusal (`--help` shows the usage)."""
        self.exit(EXIT_INVALID, f"flosssweep.run: error: {message} (see --help)\n")


EXIT_CODES = """exit status:
  0  every trial finished (a diverged trial is a finished trial)
  1  some trial failed, or the sweep was interrupted (continue it with --resume)
  2  the sweep file or the options are invalid (nothing was started)
  3  the tracking store or the Ray cluster cannot be reached (nothing was started)"""


def parse_args(argv: list[str] | None = None, prog: str = "python -m flosssweep.run") -> argparse.Namespace:
    parser = _Parser(
        prog=prog, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a sweep file through Ray Tune, recording every trial in MLflow; at the end, "
                    "the report of the sweep goes onto its parent run.")
    parser.add_argument("sweep", help="sweep file path, or the name of a file in search_spaces/ (e.g. quickstart)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<this directory>/mlflow.db)")
    parser.add_argument("--storage-path", help="where Ray keeps trial checkpoints and experiment state "
                        "(default: ./ray_results; on a multi-node cluster a shared or cloud path)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the last interrupted launch of this sweep (finished trials are not rerun)")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once (overrides the file)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials it would run and exit")
    parser.add_argument("--address", help="Ray address (default: a cluster running on this machine, else a new "
                        "local instance; 'local' always starts a new one)")
    parser.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of a new local Ray instance")
    parser.add_argument("--no-report", action="store_true",
                        help="do not make the report at the end (python -m flosssweep.report makes it later)")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray's own output too (its status tables, hints and INFO lines)")
    return parser.parse_args(argv)


def _refuse(message: str, code: int = EXIT_INVALID) -> int:
    print(f"flosssweep.run: error: {message}", file=sys.stderr, flush=True)
    return code


def _storage_path(flag: str | None, launch_dir: Path) -> str:
    if flag and "://" in flag:
        return flag.rstrip("/")
    return str((launch_dir / (flag or "ray_results")).expanduser().resolve())


def _filesystem(path: str):
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def _write_launch(experiment_dir: str, launch: dict) -> None:
    fs, path = _filesystem(experiment_dir)
    fs.create_dir(path)
    with fs.open_output_stream(f"{path}/{LAUNCH_FILE}") as out:
        out.write(json.dumps(launch, indent=1).encode())


def _read_launch(experiment_dir: str) -> dict | None:
    fs, path = _filesystem(experiment_dir)
    try:
        with fs.open_input_stream(f"{path}/{LAUNCH_FILE}") as stream:
            return json.loads(stream.read().decode())
    except (FileNotFoundError, OSError):
        return None


def _init_ray(args: argparse.Namespace) -> None:
    import ray

    from flosssweep.sweep import quiet

    options = quiet.configure(args.verbose)
    if ray.is_initialized():
        return
    if args.address == "local":
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, **options)
    elif args.num_cpus is not None and args.address is None:
        ray.init(num_cpus=args.num_cpus, **options)
    else:
        ray.init(address=args.address, **options)


def trainable(sweep, launch: str, train_ref: str = TRAIN):
    """The trial function with what every trial shares; `launch` (the parent run id) tells a
    trial's checkpoints from those an earlier launch of the same sweep left in the experiment."""
    from ray import tune

    from flosssweep import provenance

    function = tune.with_parameters(run_trial, base=sweep.base, sweep_name=sweep.name, launch=launch,
                                    checkpoint_seconds=sweep.checkpoint_seconds, train_ref=train_ref,
                                    provenance=provenance.collect())
    return tune.with_resources(function, {"cpu": sweep.resources["cpu"], "gpu": sweep.resources["gpu"]})


def build_tuner(sweep, storage: str, callback, launch: str, train_ref: str = TRAIN, study: dict | None = None,
                verbose: int = 0):
    """`study`: where an Optuna search keeps its study (`storage`, `study_name`), see `search.searcher`."""
    from ray import tune

    from flosssweep.sweep import search
    from flosssweep.sweep.callbacks import TerminalProgress

    tune_config = tune.TuneConfig(
        metric=sweep.ray_metric_name, mode=sweep.mode, search_alg=search.searcher(sweep, **(study or {})),
        scheduler=search.scheduler(sweep), num_samples=sweep.tune_num_samples(), reuse_actors=True)
    run_config = tune.RunConfig(
        name=sweep.name, storage_path=storage, verbose=verbose,
        callbacks=[callback, TerminalProgress(list(sweep.space))],
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None))  # see _Checkpoints
    return tune.Tuner(trainable(sweep, launch, train_ref), param_space=search.param_space(sweep),
                      tune_config=tune_config, run_config=run_config)


def _resolved_base(sweep) -> str:
    """Every key of a trial, the varied ones by their axis; '*' marks a value that is not the default."""
    from flosssweep import config as cfg

    values = cfg.flatten(sweep.base_values())
    width = max(map(len, values))
    lines = [f"  {'*' if value != cfg.SCHEMA[key].default else ' '} {key:<{width}}  "
             + (f"varied: {sweep.space[key].describe()}" if key in sweep.space else str(value))
             for key, value in values.items()]
    return "  base of every trial (* = not the default):\n" + "\n".join(lines)


def _study(sweep, uri: str, experiment_dir: str, parent_run_id: str) -> dict | None:
    """An Optuna search's study, one per launch, kept next to the tracking store (None otherwise)."""
    from flosssweep.names import OPTUNA_STORAGE, OPTUNA_STUDY
    from flosssweep.sweep import search

    if sweep.search != "optuna":
        return None
    where = search.study_storage(uri, experiment_dir)
    if where is None:
        print("note: the Optuna study stays in memory (a tracking server and remote Ray storage leave no "
              "local file for it)", flush=True)
        return None
    study = {"storage": where, "study_name": f"{sweep.name} {parent_run_id}"}
    store.tag_run(uri, parent_run_id, {OPTUNA_STORAGE: where, OPTUNA_STUDY: study["study_name"]})
    print(f"Optuna study '{study['study_name']}' in {where}  (browse: optuna-dashboard {where})", flush=True)
    return study


def _report(uri: str, parent_run_id: str, sweep) -> None:
    """The sweep's report onto its parent run (tables, figures, summary), against the forcing
    interval for a sweep over task.tau, else the delay; a report that cannot be made is a note, not a
    failed sweep."""
    from flosssweep.config import column_name
    from flosssweep.report import main as report_main

    x = column_name("task.tau" if "task.tau" in sweep.space else "task.delay")
    print("", flush=True)
    if report_main(["--run", parent_run_id, "--tracking-uri", uri, "--x", x]) != 0:
        print("note: the report could not be completed (see above); the sweep itself is recorded", flush=True)


def main(argv: list[str] | None = None, *, train_ref: str = TRAIN, prog: str = "python -m flosssweep.run") -> int:
    args = parse_args(argv, prog)
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
    if args.dry_run:
        print(sweep.describe())
        print(_resolved_base(sweep))
        return 0

    storage = _storage_path(args.storage_path, launch_dir)
    experiment_dir = f"{storage}/{sweep.name}"
    launch = None
    if args.resume:
        launch = _read_launch(experiment_dir)
        if launch is None:
            return _refuse(f"--resume: no launch of sweep {sweep.name} under {storage} "
                           "(start it without --resume, or pass the --storage-path it ran with)")
        if launch["fingerprint"] != json.loads(json.dumps(sweep.fingerprint())):
            return _refuse(f"--resume: {sweep.source} changed since the launch being resumed "
                           "(restore the file, or start a new launch without --resume)")
        uri = launch["tracking_uri"]
        if args.tracking_uri and store.absolute_uri(args.tracking_uri, launch_dir) != uri:
            return _refuse(f"--tracking-uri: expected {uri}, where this launch started (a resumed sweep "
                           "keeps writing to its parent run)")
    else:
        uri = store.resolve_uri(args.tracking_uri, launch_dir)
    try:
        store.check_reachable(uri)
    except store.TrackingUnavailable as err:
        return _refuse(str(err), EXIT_UNAVAILABLE)

    started = time.monotonic()
    try:
        _init_ray(args)
    except (ConnectionError, ValueError, RuntimeError) as err:
        return _refuse(f"Ray: {str(err).splitlines()[0]}", EXIT_UNAVAILABLE)
    import ray
    from ray import tune

    if sweep.resources["gpu"] > 0 and not ray.cluster_resources().get("GPU"):
        print(f"note: each trial asks for {sweep.resources['gpu']:g} GPU and this Ray cluster has none now; "
              "trials wait until an autoscaler adds GPU nodes (on a machine without a GPU, set "
              "resources.gpu: 0 in the sweep file)", flush=True)
    if launch is not None:
        if not tune.Tuner.can_restore(experiment_dir):
            return _refuse(f"--resume: {experiment_dir} holds no Ray experiment to resume")
        parent_run_id, experiment_id = launch["parent_run_id"], launch["experiment_id"]
        try:
            store.reopen_parent(uri, parent_run_id)
        except store.TrackingUnavailable as err:
            return _refuse(str(err), EXIT_UNAVAILABLE)
        print(f"resuming sweep {sweep.name} from {experiment_dir} (MLflow parent run {parent_run_id})", flush=True)
        if args.max_concurrent is not None:
            print("note: --max-concurrent does not change a resumed launch (Ray restores its search as it was)",
                  flush=True)
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # see below
        tuner = tune.Tuner.restore(experiment_dir, trainable=trainable(sweep, parent_run_id, train_ref),
                                   resume_unfinished=True, resume_errored=True)
    else:
        experiment_id, parent_run_id = store.start_parent(uri, sweep, experiment_dir)
        from flosssweep import provenance
        from flosssweep.sweep.callbacks import MLflowCallback
        from flosssweep.tracking.recorder import SweepRecorder

        callback = MLflowCallback(SweepRecorder(uri, experiment_id, parent_run_id, sweep.name, sweep.base,
                                                list(sweep.space),
                                                run_tags=provenance.mlflow_source_tags(provenance.collect())))
        study = _study(sweep, uri, experiment_dir, parent_run_id)
        tuner = build_tuner(sweep, storage, callback, parent_run_id, train_ref, study, verbose=int(args.verbose))
        _write_launch(experiment_dir, {"parent_run_id": parent_run_id, "experiment_id": experiment_id,
                                       "tracking_uri": uri, "sweep": sweep.source,
                                       "fingerprint": sweep.fingerprint(), "optuna": study})
        print(f"sweep {sweep.name}: {sweep.num_trials()} trials, MLflow {uri} "
              f"(experiment {sweep.name}, parent run {parent_run_id})", flush=True)

    # Trials bring their own history; Ray's warning about result files an interrupted driver never
    # wrote is no news here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        ended = store.outcome(uri, experiment_id, parent_run_id)
        finished = ended["recorded"] + ended["stopped"]
        complete = finished + ended["error"] >= sweep.num_trials() and not ended["open"]
        status = "FINISHED" if complete and not ended["error"] else ("FAILED" if complete else "KILLED")
        store.end_parent(uri, parent_run_id, status, {f"{TAG_PREFIX}{k}": str(v) for k, v in ended.items()})
    minutes = (time.monotonic() - started) / 60
    print(f"\nsweep {sweep.name}: {finished} of {sweep.num_trials()} trials finished"
          + (f" ({ended['stopped']} stopped early)" if ended["stopped"] else "")
          + f", {ended['error']} failed, {minutes:.1f} min")
    if not complete:
        print(f"interrupted: continue with  python -m flosssweep.run {args.sweep} --resume"
              + (f" --storage-path {storage}" if args.storage_path else ""))
    elif not args.no_report and finished:
        _report(uri, parent_run_id, sweep)
    env = "" if uri == store.default_uri(launch_dir) else f"MLFLOW_TRACKING_URI={uri} "
    print(f"report:  {env}python -m flosssweep.report --run {parent_run_id}")
    # MLflow 3.x's UI opens experiments in its GenAI view unless the address asks for the other one.
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning"
    print(f"browse:  mlflow ui --backend-store-uri {uri}   then http://127.0.0.1:5000/{page}"
          if uri.startswith("sqlite") else f"browse:  {uri.rstrip('/')}/{page}")
    return 0 if complete and not ended["error"] else EXIT_FAILED
