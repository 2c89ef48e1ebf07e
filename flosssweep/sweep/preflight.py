"""What a sweep launch checks before it starts work, and what it does when it is refused or stopped.

Before Ray starts: the options, the storage path (reachable and writable), the Ray address (a
cluster that does not answer would keep `ray.init` waiting; without an address, the cluster that
Ray's own file names must answer, or the driver starts a Ray of its own), an earlier launch of the
same sweep in the same folder that could still be resumed. Once Ray is up: whether any node can
ever hold one trial. Each refusal is a `Refused` with one line and its exit status.

And around the launch: SIGTERM is turned into the Ctrl-C that Ray Tune stops cleanly on (a launch
that can no longer be resumed is ended by `TrackingStore.close_launches`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid

from flosssweep.checks import EXIT_INVALID, Unwritable, writable_directory
from flosssweep.names import RAY_ADDRESS_ENV, RAY_CURRENT_CLUSTER, RAY_TMPDIR_ENVS
from flosssweep.protocol import LaunchFile
from flosssweep.sweep.loopback import ray_running
from flosssweep.tracking.store import CLOSED, RESUMABLE, TrackingStore

EXIT_UNAVAILABLE = 3


class Refused(Exception):
    def __init__(self, message: str, code: int = EXIT_INVALID):
        super().__init__(message)
        self.code = code


# -- before Ray starts ---------------------------------------------------------------------------
def check_options(args) -> None:
    if args.num_cpus is not None and args.num_cpus < 1:
        raise Refused(f"--num-cpus: expected an integer >= 1, got {args.num_cpus}")
    if args.report_out is not None:
        if args.no_report:
            raise Refused("--report-out: not with --no-report (there is no report to write)")
        try:
            writable_directory(args.report_out, "--report-out")
        except Unwritable as err:
            raise Refused(str(err)) from None


def check_extend(args, sweep) -> None:
    """--extend: a new launch, of a sweep whose trials are identified by their values alone (an
    adaptive axis, or grids only; a drawn value would make every trial new)."""
    for flag in ("resume", "close"):
        if getattr(args, flag):
            raise Refused(f"--extend: not with --{flag} (--extend starts a new launch of the experiment)")
    drawn = [a.key for a in sweep.space.values() if a.kind != "grid" and a.plan is None]
    if sweep.search != "grid" or drawn:
        raise Refused(
            f"--extend: expected a sweep with an adaptive axis or grid axes only under search: grid "
            f"({', '.join(drawn) or 'search ' + sweep.search} would draw new trials, not extend the recorded ones)"
        )


def check_storage(storage: str) -> None:
    """The storage path can be written: a probe file is created there and deleted again."""
    if "://" not in storage:
        try:
            writable_directory(storage, "--storage-path")
        except Unwritable as err:
            raise Refused(str(err)) from None
        return
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(storage)
    except (ValueError, OSError) as err:  # ArrowInvalid is a ValueError
        raise Refused(
            f"--storage-path {storage}: not a storage URI pyarrow can open ({str(err).splitlines()[0]})"
        ) from None
    if isinstance(fs, pyarrow.fs.LocalFileSystem):  # file://: a local path after all
        check_storage(path)
        return
    probe = f"{path.rstrip('/')}/.flosssweep-probe-{uuid.uuid4().hex[:8]}"
    try:
        fs.create_dir(path.rstrip("/") or "/")
        with fs.open_output_stream(probe) as out:
            out.write(b"probe")
        fs.delete_file(probe)
    except OSError as err:
        raise Refused(
            f"--storage-path {storage}: cannot write there ({str(err).splitlines()[0]})", EXIT_UNAVAILABLE
        ) from None


def check_ray_address(address: str | None, timeout: float = 5.0, attempts: int = 2) -> None:
    """A given Ray address answers on its port (`auto`, `local` and none are Ray's to resolve)."""
    address = address or os.environ.get(RAY_ADDRESS_ENV)
    if not address or address in ("auto", "local"):
        return
    host, port = _host_port(address)
    if host is None:
        raise Refused(f"--address: expected host:port, ray://host:port, auto or local, got {address!r}")
    reason = _unanswered(host, port, timeout, attempts)
    if reason:
        raise Refused(
            f"Ray: no cluster answers at {address} ({reason}); start it (ray start --head) or pass another --address",
            EXIT_UNAVAILABLE,
        )


def dead_current_cluster(address: str | None, timeout: float = 5.0, attempts: int = 2) -> bool:
    """Whether `ray.init` would join a cluster that does not answer, and wait for it for good: with no
    address given, Ray joins the cluster its file `ray_current_cluster` names (the last `ray start` on
    this machine), and one that died without `ray stop` leaves the file behind. Then a note says that
    the driver starts a Ray of its own instead. Only a TCP connect is tried: anything else listening on
    that port passes for the cluster."""
    if address or os.environ.get(RAY_ADDRESS_ENV) or ray_running():
        return False
    named = os.path.join(_ray_temp_folder(), "ray", RAY_CURRENT_CLUSTER)
    try:
        with open(named) as stream:
            recorded = stream.read().strip()
    except OSError:
        return False
    host, port = _host_port(recorded)
    reason = _unanswered(host, port, timeout, attempts) if host else "not host:port"
    if reason:
        print(
            f"note: {named} names a Ray at {recorded!r}, where none answers ({reason}): the last `ray start`'s "
            "cluster stopped without `ray stop`; starting a Ray of its own here",
            flush=True,
        )
    return bool(reason)


def _ray_temp_folder() -> str:
    """Ray's own choice (ray._common.utils.get_default_system_temp_dir), made without importing Ray,
    which would come before the driver's settings for it."""
    ray_tmpdir, tmpdir = RAY_TMPDIR_ENVS
    if ray_tmpdir in os.environ:
        return os.environ[ray_tmpdir]
    if sys.platform.startswith("linux") and tmpdir in os.environ:
        return os.environ[tmpdir]
    return "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()


def _host_port(address: str) -> tuple[str | None, int]:
    """host:port, ray://host:port or [v6-host]:port, as Ray writes IPv6 addresses."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None, 0
    return host, int(port)


def _unanswered(host: str, port: int, timeout: float, attempts: int) -> str | None:
    """Why nothing answers at host:port, or None when something does."""
    reason = None
    for attempt in range(attempts):
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as err:
            reason = err.strerror or type(err).__name__
        if attempt + 1 < attempts:
            time.sleep(1.0)
    return reason


def check_earlier_launch(launch: LaunchFile | None, experiment_dir: str, sweep_arg: str) -> None:
    """Refuse a new launch over one that is still running or resumable in the same folder: the two
    would share the Ray experiment and the launch file, and the first could be neither resumed nor
    closed any more."""
    if launch is None:
        return
    status = TrackingStore(launch.tracking_uri).parent_status(launch.parent_run_id)
    if status is None:
        return  # its tracking store or parent run is gone: nothing left to resume
    run_status, reason = status
    if run_status in RESUMABLE and reason != CLOSED:
        raise Refused(
            f"sweep {launch.sweep or sweep_arg} has an unfinished launch in {experiment_dir} "
            f"(MLflow parent run {launch.parent_run_id}, {run_status}): continue it with "
            f"--resume, end it with --close, or pass another --storage-path"
        )


def check_resumable(launch: LaunchFile, store: TrackingStore) -> None:
    status = store.parent_status(launch.parent_run_id)
    if status is not None and status[1] == CLOSED:
        raise Refused(
            f"--resume: the launch of MLflow parent run {launch.parent_run_id} was {CLOSED} "
            "(start a new launch without --resume)"
        )


def check_experiment_state(experiment_dir: str) -> None:
    """Ray's files of the experiment to resume can be read: its newest experiment state (JSON) and its
    pickled Tuner. Ray's own restore fails on them with a traceback, after the parent run was reopened,
    and every later --resume would fail the same way."""
    import pickle

    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(experiment_dir) if "://" in experiment_dir else (None, experiment_dir)
    fs = fs or pyarrow.fs.LocalFileSystem()
    way_out = "end that launch with --close, then start a new launch without --resume"
    try:
        listing = fs.get_file_info(pyarrow.fs.FileSelector(path))
    except OSError:
        return  # no folder: Ray's can_restore says so in its own words
    states = sorted(
        i.path for i in listing if i.base_name.startswith("experiment_state") and i.base_name.endswith(".json")
    )
    for name, read in ((states[-1] if states else None, json.loads), (f"{path}/tuner.pkl", pickle.loads)):
        if name is None:
            continue
        try:
            with fs.open_input_stream(name) as stream:
                read(stream.read())
        except FileNotFoundError:
            continue
        except Exception as err:  # noqa: BLE001 - whatever a corrupt file raises, the answer is the same
            raise Refused(
                f"--resume: Ray's experiment state {name} cannot be read ({type(err).__name__}); {way_out}"
            ) from None


# -- once Ray is up ------------------------------------------------------------------------------
def check_resources(resources: dict) -> str | None:
    """Refuse a sweep no node can ever run a trial of; returns a note when trials must wait for an
    autoscaler."""
    import ray

    need = {"CPU": resources["cpu"], "GPU": resources["gpu"]}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0) >= v for k, v in need.items() if v) for node in nodes):
        return None
    asked = f"each trial asks for {need['CPU']:g} CPU and {need['GPU']:g} GPU"
    largest = ", ".join(f"{n.get('CPU', 0):g} CPU {n.get('GPU', 0):g} GPU" for n in nodes[:4])
    refusal = Refused(
        f"resources: {asked} and no node of this Ray cluster has that many ({largest}); "
        "lower resources.cpu / resources.gpu in the sweep file (gpu: 0 on a machine without "
        "a GPU), or add such nodes"
    )
    node = ray._private.worker._global_node  # noqa: SLF001 - who started Ray: no public API says
    if node is not None and node.is_head():
        raise refusal  # a Ray instance this driver started has no autoscaler
    groups = _autoscaler_groups()
    if groups is not None and not any(all(g.get(k, 0) >= v for k, v in need.items() if v) for g in groups):
        raise refusal
    return f"note: {asked} and no node has that many now; trials wait until the cluster's autoscaler adds such a node"


def _autoscaler_groups() -> list[dict] | None:
    """Resources of each node type the autoscaler may add (those with a max count above 0), or
    None when the cluster does not say."""
    try:
        config = ray_state().get_cluster_config()
    except Exception:  # noqa: BLE001 - a private API: not knowing is the safe answer
        return None
    if config is None:
        return None
    return [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]


def ray_state():
    from ray._private.state import state  # noqa: PLC2701

    return state


# -- around the launch ---------------------------------------------------------------------------
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`), SIGHUP (a closing terminal) and SIGQUIT (Ctrl-\\) as SIGINT: Ray
    Tune then stops the trials, saves the experiment and returns, so the parent run is closed and the
    launch stays resumable; left to the default handlers the driver dies with its runs RUNNING (or,
    under Ray's own handler, aborts with a C++ stack dump)."""
    if threading.current_thread() is threading.main_thread():  # the only thread that may set handlers
        for number in STOP_SIGNALS:
            signal.signal(number, lambda signum, frame: signal.raise_signal(signal.SIGINT))
