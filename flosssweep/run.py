"""Run a sweep: Ray Tune over a sweep file, every trial recorded in MLflow (DESIGN 9, 10).

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
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

TRAIN = "flosssweep.trainer:train"
LAUNCH_FILE = "flosssweep-launch.json"  # in the Ray experiment directory: what --resume needs
STATE_FILE = "state.pt"  # trainer state, in all but a finished trial's checkpoints
META_FILE = "meta.json"  # {"epoch": e, "done": bool, "metrics": {...}}, in every checkpoint
KEEP_STATES = 2  # checkpoints of a trial that keep their (large) state file
EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE = 1, 2, 3


# -- inside a trial (a Ray worker) ----------------------------------------------------------------
class _Checkpoints:
    """A trial's checkpoints where Ray stores them (local disk or a cloud bucket).

    The experiment snapshot that --resume starts from can be seconds older than the newest
    checkpoint; it may even predate a trial, which Ray then creates again, in a new directory and,
    under Optuna, with a new trial id. So Ray is told to keep every checkpoint (num_to_keep=None: it
    refuses to resume from one it has deleted), trials drop the large state file from all but the
    KEEP_STATES newest checkpoints themselves, and a trial that starts looks through the whole
    experiment for the newest checkpoint of the same launch and configuration (seeded, hence the
    same computation): records if it had finished, else its latest state. It neither trains again
    what was done nor starts over what was under way.
    """

    def __init__(self, config: dict, launch: str, fs=None, directories: list[str] | None = None):
        self.config = json.loads(json.dumps(config))  # as it reads back from meta.json
        self.launch = launch
        self.fs, self.directories = fs, directories or []

    @classmethod
    def of_this_trial(cls, config: dict, launch: str) -> "_Checkpoints":
        import posixpath

        import pyarrow.fs as pafs
        from ray import tune

        try:
            storage = tune.get_context().get_storage()
            fs, experiment, own = storage.storage_filesystem, storage.experiment_fs_path, storage.trial_fs_path
        except (AttributeError, RuntimeError):  # no storage context: only what Ray hands back
            checkpoint = tune.get_checkpoint()
            if checkpoint is None:
                return cls(config, launch)
            return cls(config, launch, checkpoint.filesystem, [posixpath.dirname(checkpoint.path.rstrip("/"))])
        directories = [info.path for info in fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
                       if info.type == pafs.FileType.Directory]
        return cls(config, launch, fs, sorted(set(directories) | {own}))

    def meta(self, epoch: int, done: bool, **more) -> str:
        return json.dumps({"epoch": epoch, "done": done, "launch": self.launch, "config": self.config, **more})

    def _scan(self) -> list[tuple[tuple, str, dict]]:
        """(sort key, path, meta) of every checkpoint of this trial with something to restore."""
        import pyarrow.fs as pafs

        found = []
        for directory in self.directories:
            for info in self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
                if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
                    continue
                try:
                    with self.fs.open_input_stream(f"{info.path}/{META_FILE}") as stream:
                        meta = json.loads(stream.read().decode())
                except (OSError, ValueError):
                    continue
                if meta.get("config") != self.config or meta.get("launch") != self.launch:
                    continue
                has_state = self.fs.get_file_info(f"{info.path}/{STATE_FILE}").type == pafs.FileType.File
                if meta.get("done") or has_state:
                    found.append(((bool(meta.get("done")), meta.get("epoch", -1)), info.path, meta))
        return sorted(found)

    def newest(self):
        """The checkpoint to start from (a finished one first, then the latest epoch), or None."""
        from ray import tune

        found = self._scan() if self.fs is not None else []
        return tune.Checkpoint(path=found[-1][1], filesystem=self.fs) if found else None

    def prune(self) -> None:
        """After a checkpoint is persisted: delete the state of all but the newest few."""
        if self.fs is None:
            return
        for _, path, meta in self._scan()[:-KEEP_STATES]:
            if not meta.get("done"):
                try:
                    self.fs.delete_file(f"{path}/{STATE_FILE}")
                except OSError:
                    pass


class _Progress:
    """Turns the trainer's `report(metrics, epoch)` and `checkpoint(state, epoch)` into
    `ray.tune.report` calls: a report and the checkpoint of the same epoch travel together (a
    checkpoint at most every `checkpoint_seconds`), and the last epoch's report waits for the
    records so that the final result carries them.

    Every report also goes into `history`, which each checkpoint and the final result carry: the
    driver fills in from it whatever epochs never reached MLflow (a driver killed with metrics
    still in its buffer, a trial resumed from a checkpoint after those epochs)."""

    def __init__(self, final_epoch: int, checkpoint_seconds: float, checkpoints: _Checkpoints,
                 history: list | None = None):
        self.final_epoch = final_epoch
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoints = checkpoints
        self.history = list(history or [])  # [epoch, metrics] of every report of the trial
        self.last_checkpoint = time.monotonic()
        self.held: tuple[dict, int] | None = None  # a report waiting for its checkpoint
        self.state: tuple[dict, int] | None = None  # a checkpoint waiting for its report

    def report(self, metrics: dict, epoch: int) -> None:
        if self.held is not None:
            self._send()
        self.history.append([int(epoch), metrics])
        self.held = (metrics, epoch)
        if epoch < self.final_epoch and self.state is not None and self.state[1] == epoch:
            self._send(self.state[0])

    def checkpoint(self, state: dict, epoch: int) -> None:
        if epoch >= self.final_epoch:
            return  # the final report carries the records instead
        if self.held is not None and self.held[1] == epoch:
            self._send(state)
        else:
            self.state = (state, epoch)

    def _send(self, state: dict | None = None) -> None:
        import tempfile

        import torch
        from ray import tune

        metrics, epoch = self.held
        self.held, self.state = None, None
        result = _result(metrics, epoch)
        if state is None or time.monotonic() - self.last_checkpoint < self.checkpoint_seconds:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, Path(tmp, STATE_FILE))
            Path(tmp, META_FILE).write_text(self.checkpoints.meta(epoch, False, history=self.history))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        self.last_checkpoint = time.monotonic()
        self.checkpoints.prune()

    def finish(self, records: list[dict]) -> None:
        metrics, epoch = self.held if self.held is not None else ({}, self.final_epoch)
        self.held = None
        _final_report(self.checkpoints, {"epoch": epoch, "metrics": metrics, "history": self.history}, records)


def _result(metrics: dict, epoch: int) -> dict:
    """`epoch` first: Ray's status table shows the first few numbers of a result."""
    first = ("charts/success_rate", "charts/accuracy", "losses/task")
    result = {"epoch": int(epoch)}
    result.update({k: metrics[k] for k in first if k in metrics})
    result.update({k: v for k, v in metrics.items() if k not in result})
    return result


def _final_report(checkpoints: _Checkpoints, meta: dict, records: list[dict], replayed: bool = False) -> None:
    """The trial's last result: its metrics, the success rate over members, the records and the
    metric history (JSON, so that Ray's loggers leave them alone), with a checkpoint that marks the
    trial done. `replayed`: the trial had finished before an interrupted driver saw it."""
    import tempfile

    from ray import tune

    from flosssweep.tracking import RECORDS_ARTIFACT, write_records

    result = _result(meta["metrics"], meta["epoch"])
    if records:
        result["charts/success_rate"] = sum(bool(r["success"]) for r in records) / len(records)
    result["records_json"] = json.dumps(records)
    result["history_json"] = json.dumps(meta["history"])
    result["replayed"] = int(replayed)
    with tempfile.TemporaryDirectory() as tmp:
        write_records(records, Path(tmp, RECORDS_ARTIFACT))
        Path(tmp, META_FILE).write_text(checkpoints.meta(meta["epoch"], True, metrics=meta["metrics"],
                                                         history=meta["history"]))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))


def _load_train(reference: str):
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def run_trial(config: dict, *, base: dict, sweep_name: str, launch: str, checkpoint_seconds: float = 60.0,
              train_ref: str = TRAIN) -> None:
    """Ray Tune function trainable: one trial of the sweep (its dotted values over the base)."""
    import logging

    import pyarrow.parquet as pq
    import torch
    from ray import tune

    from flosssweep.config import resolve
    from flosssweep.tracking import RECORDS_ARTIFACT

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    trial_config = resolve(base, config)
    trial_id = tune.get_context().get_trial_id()
    checkpoints = _Checkpoints.of_this_trial(config, launch)
    restore, history = None, []
    newest = checkpoints.newest()
    if newest is not None:
        with newest.as_directory() as directory:
            meta = json.loads(Path(directory, META_FILE).read_text())
            if meta.get("done"):  # finished before the driver went away: report, do not retrain
                records = pq.read_table(Path(directory, RECORDS_ARTIFACT)).to_pylist()
                records = [{**r, "trial_id": trial_id} for r in records]  # this trial's id, if Ray gave a new one
                _final_report(checkpoints, meta, records, replayed=True)
                return
            restore = torch.load(Path(directory, STATE_FILE), weights_only=False)
            history = meta.get("history", [])
    progress = _Progress(trial_config["train"]["epochs"], checkpoint_seconds, checkpoints, history)
    records = _load_train(train_ref)(trial_config, report=progress.report, checkpoint=progress.checkpoint,
                                     restore=restore)
    progress.finish([{"sweep": sweep_name, "trial_id": trial_id, **r} for r in records])


# -- the driver --------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line and exit status 2, like every other refusal (`--help` shows the usage)."""
        self.exit(EXIT_INVALID, f"flosssweep.run: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m flosssweep.run",
        description="Run a sweep file through Ray Tune, recording every trial in MLflow.")
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

    if ray.is_initialized():
        return
    if args.address == "local":
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False)
    elif args.num_cpus is not None and args.address is None:
        ray.init(num_cpus=args.num_cpus)
    else:
        ray.init(address=args.address)


def trainable(sweep, launch: str, train_ref: str = TRAIN):
    """The trial function with what every trial shares; `launch` (the parent run id) tells a
    trial's checkpoints from those an earlier launch of the same sweep left in the experiment."""
    from ray import tune

    function = tune.with_parameters(run_trial, base=sweep.base, sweep_name=sweep.name, launch=launch,
                                    checkpoint_seconds=sweep.checkpoint_seconds, train_ref=train_ref)
    return tune.with_resources(function, {"cpu": sweep.resources["cpu"], "gpu": sweep.resources["gpu"]})


def build_tuner(sweep, storage: str, callback, launch: str, train_ref: str = TRAIN):
    from ray import tune

    from flosssweep import tracking

    tune_config = tune.TuneConfig(
        metric=sweep.ray_metric_name, mode=sweep.mode, search_alg=sweep.searcher(),
        scheduler=sweep.tune_scheduler(), num_samples=sweep.tune_num_samples(), reuse_actors=True)
    run_config = tune.RunConfig(
        name=sweep.name, storage_path=storage, verbose=0,
        callbacks=[callback, tracking.TerminalProgress(list(sweep.space))],
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None))  # see _Checkpoints
    return tune.Tuner(trainable(sweep, launch, train_ref), param_space=sweep.param_space(),
                      tune_config=tune_config, run_config=run_config)


def main(argv: list[str] | None = None, *, train_ref: str = TRAIN) -> int:
    from flosssweep import layout, space, tracking
    from flosssweep.config import ConfigError

    args = parse_args(argv)
    launch_dir = Path.cwd().resolve()
    try:
        sweep = space.load(space.locate(args.sweep))
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
        if args.tracking_uri and layout.absolute_uri(args.tracking_uri, launch_dir) != uri:
            return _refuse(f"--tracking-uri: expected {uri}, where this launch started (a resumed sweep "
                           "keeps writing to its parent run)")
    else:
        uri = layout.resolve_uri(args.tracking_uri, launch_dir)
    try:
        tracking.check_reachable(uri)
    except tracking.TrackingUnavailable as err:
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
            tracking.reopen_parent(uri, parent_run_id)
        except tracking.TrackingUnavailable as err:
            return _refuse(str(err), EXIT_UNAVAILABLE)
        print(f"resuming sweep {sweep.name} from {experiment_dir} (MLflow parent run {parent_run_id})", flush=True)
        if args.max_concurrent is not None:
            print("note: --max-concurrent does not change a resumed launch (Ray restores its search as it was)",
                  flush=True)
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # see below
        tuner = tune.Tuner.restore(experiment_dir, trainable=trainable(sweep, parent_run_id, train_ref),
                                   resume_unfinished=True, resume_errored=True)
    else:
        experiment_id, parent_run_id = tracking.start_parent(uri, sweep, experiment_dir)
        callback = tracking.SweepLogger(uri, experiment_id, parent_run_id, sweep.name, sweep.base,
                                        list(sweep.space))
        tuner = build_tuner(sweep, storage, callback, parent_run_id, train_ref)
        _write_launch(experiment_dir, {"parent_run_id": parent_run_id, "experiment_id": experiment_id,
                                       "tracking_uri": uri, "sweep": sweep.source,
                                       "fingerprint": sweep.fingerprint()})
        print(f"sweep {sweep.name}: {sweep.num_trials()} trials, MLflow {uri} "
              f"(experiment {sweep.name}, parent run {parent_run_id})", flush=True)

    # Trials bring their own history; Ray's warning about result files an interrupted driver never
    # wrote is no news here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        ended = tracking.outcome(uri, experiment_id, parent_run_id)
        finished = ended["recorded"] + ended["stopped"]
        complete = finished + ended["error"] >= sweep.num_trials() and not ended["open"]
        status = "FINISHED" if complete and not ended["error"] else ("FAILED" if complete else "KILLED")
        tracking.end_parent(uri, parent_run_id, status, {f"flosssweep.{k}": str(v) for k, v in ended.items()})
    minutes = (time.monotonic() - started) / 60
    print(f"\nsweep {sweep.name}: {finished} of {sweep.num_trials()} trials finished"
          + (f" ({ended['stopped']} stopped early)" if ended["stopped"] else "")
          + f", {ended['error']} failed, {minutes:.1f} min")
    if not complete:
        print(f"interrupted: continue with  python -m flosssweep.run {args.sweep} --resume"
              + (f" --storage-path {storage}" if args.storage_path else ""))
    env = "" if uri == layout.default_uri(launch_dir) else f"MLFLOW_TRACKING_URI={uri} "
    print(f"report:  {env}python -m flosssweep.report --run {parent_run_id}")
    print(f"browse:  mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"browse:  {uri}")
    return 0 if complete and not ended["error"] else EXIT_FAILED


if __name__ == "__main__":
    # Run as a file (`python flosssweep/run.py`, or `ray submit` from the head node's home directory):
    # hand over to the installed package, so that Ray pickles the trainable by reference; in a
    # checkout that is not installed, the package next to this file.
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _here:
        sys.path.pop(0)  # this directory would shadow top-level modules with config.py, tasks.py, ...
    try:
        import flosssweep  # noqa: F401
    except ImportError:
        if (_here / "__init__.py").is_file():
            sys.path.insert(0, str(_here.parent))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_here.parent),
                                                                     os.environ.get("PYTHONPATH")]))
    from flosssweep.run import main as _main

    sys.exit(_main())
