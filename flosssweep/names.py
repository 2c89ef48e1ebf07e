"""The names that cross module or process boundaries: metrics, record columns, MLflow tags and
artifacts, and the keys of what a trial's worker and the driver hand each other.

Every writer and every reader imports these; nothing else spells them. A test runs both trainers and
fails when one emits a metric or a record column missing here, or when a name here is emitted by
neither (so a sweep file's `metric` can only name what some trainer reports); another fails when a
module on a process boundary reads or writes a key that is not listed here.
"""

from __future__ import annotations

# -- metrics: what trainers report every `train.report_every` epochs (MLflow step = epoch) -------
LOSSES = ("losses/task", "losses/floss", "losses/floss_now")
CHARTS = ("charts/accuracy", "charts/success_rate", "charts/grad_norm", "charts/nonfinite_steps", "charts/diverged")
LYAPUNOV = ("lyapunov/lambda_1", "lyapunov/lambda_k")
PARITY_METRICS = LOSSES + CHARTS + LYAPUNOV + ("lyapunov/mean_abs", "lyapunov/log_condition")
CHAOTIC_METRICS = (
    LOSSES
    + tuple(c for c in CHARTS if c != "charts/accuracy")
    + ("charts/dstsp", "charts/dh", "charts/tau")
    + LYAPUNOV
    + ("lyapunov/lambda_max_model_per_time", "lyapunov/lambda_max_data_per_time")
)
METRICS = tuple(dict.fromkeys(PARITY_METRICS + CHAOTIC_METRICS))
SUCCESS_RATE = "charts/success_rate"
# Counters that stay 0 in a healthy run: logged from the first non-zero value on, so that MLflow
# draws no chart of flat zeros (a missing chart means "never happened").
ZERO_UNTIL_RAISED = ("charts/nonfinite_steps", "charts/diverged")
METRIC_ALIASES = {"success_rate": SUCCESS_RATE}  # short names a sweep file may use
# Not a trainer's: the sweep worker adds it to the first report of each start of a trial (0, or
# the epoch of the checkpoint it resumed from), so a retried trial shows where it picked up.
RESTORED_FROM = "trial/restored_from_epoch"

# -- record columns: one row per realization --------------------------------------------------
# Who a row is. (The configuration columns come from the config schema: see config.column_name.)
# A realization is fixed by its sweep, its configuration (config_key leaves out operational keys), the
# base seed and the member index (member j of seed s is seeded by (s, j) alone): one row per key.
REALIZATION_KEY = ("sweep", "config_key", "seed", "member")
# The key and the trial's id, a label only (a trial Ray re-creates after a resume has a new id).
IDENTITY_COLUMNS = REALIZATION_KEY + ("trial_id",)
# What happened to it, on every task.
COMMON_OUTCOMES = (
    "success",
    "final_loss",
    "lambda_1",
    "lambda_k",
    "status",
    "nonfinite_steps",
    "train_seconds",
    "records_version",
)
PARITY_OUTCOMES = (
    "final_accuracy",
    "epochs_to_success",
    # (lambda_1 - lambda_k) * Tp before training, after pre-flossing, at the end
    "log_condition_initial",
    "log_condition_pre",
    "log_condition_final",
)
CHAOTIC_OUTCOMES = (
    "dstsp",
    "dh",
    "lambda_max_model",
    "lambda_max_data",
    "lambda_max_model_per_time",
    "lambda_max_data_per_time",
    "tau_predicted",
)
OUTCOME_COLUMNS = COMMON_OUTCOMES + PARITY_OUTCOMES + CHAOTIC_OUTCOMES
OUTCOME_PREFIXES = ("final_", "lambda_")  # outcome columns a newer trainer may add
# Which code made the row (flosssweep.provenance): same values on every row of a launch.
PROVENANCE_COLUMNS = (
    "code_commit",
    "code_dirty",
    "flosssweep_version",
    "torch_version",
    "ray_version",
    "mlflow_version",
    "optuna_version",
    "command",
)
STATUSES = ("ok", "diverged", "error")  # a record's `status`
# Short record names of the main configuration axes; every other key is its dotted path with '_'.
CONFIG_COLUMNS = {
    "model.arch": "arch",
    "model.hidden": "hidden",
    "task.name": "task",
    "task.bits": "bits",
    "task.delay": "delay",
    "task.tau": "tau",
    "floss.mode": "floss_mode",
    "floss.k": "floss_k",
    "floss.strength": "floss_strength",
}
# The `records_version` every row carries: which random streams made its realization. 1 (rows without
# the column): per-member CPU generators; 2: per-member Philox streams on the trial's device
# (flosssweep.streams); 3: the same training, with each state's diagnostics (lambda_1, lambda_k,
# log_condition_*) read from one spectrum estimate whose inputs are numbered by the state
# (ParityTrial.state_spectrum). Rows of one seed, member and config_key but another version are
# other realizations.
RECORDS_VERSION = 3

# -- MLflow: one experiment per sweep name, a parent run per launch, a child run per trial -------
PARENT = "mlflow.parentRunId"  # MLflow's own: nests the children under their parent in the UI
# MLflow's own experiment tag and its value (ExperimentKind in mlflow/server/js) for the model-training
# view (runs, charts) rather than the GenAI one (traces). MLflow 3.17's UI reads it only with its
# GenAI/Model-training toggle switched off; otherwise the toggle or `?workflowType=machine_learning` in
# the address decides, which is why the driver prints such an address.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
ROLE = "flosssweep.role"  # "parent" or "child"
SWEEP = "flosssweep.sweep"
SOURCE = "flosssweep.source"  # parent: the sweep file it was launched from
RAY_PATH = "flosssweep.ray_path"  # parent: the Ray experiment directory (what --resume needs)
TRIALS = "flosssweep.trials"  # parent: trials the sweep will run
LAUNCH = "flosssweep.launch"  # parent: its name at launch (stamp, axes, trials); the report adds T50 to the name
END_REASON = "flosssweep.end_reason"  # parent: why a launch ended without finishing (refused, interrupted, closed)
OPTUNA_STORAGE = "flosssweep.optuna_storage"  # parent of an Optuna search: the database of its study
OPTUNA_STUDY = "flosssweep.optuna_study"  # ... and the study's name in it
ADAPTIVE_STATE = "flosssweep.adaptive"  # parent of an adaptive sweep: "finished" once every group stopped
EXTENDS = "flosssweep.extends"  # parent of an --extend launch ("true"): it adds to the experiment's earlier launches
TRIAL_ID = "flosssweep.trial_id"
TRIAL_CONFIG = "flosssweep.trial_config"  # child: its varied values as JSON (finds a re-created trial's run)
CONFIG_KEY = "flosssweep.config_key"
RECORDED = "flosssweep.recorded"  # child: "true" once its records are logged
STATUS = "flosssweep.status"  # child: stopped, error or abandoned when it has no records
ENDED_STATUSES = ("stopped", "error", "abandoned")
RETRIES = "flosssweep.retries"
SUMMARY_TAGS = ("successes", "members", "diverged", "status")  # child: flosssweep.<name>
TAG_PREFIX = "flosssweep."  # of every tag above, and of the counts and summary tags
RECORDS_ARTIFACT = "records.parquet"  # per-member records, at each child run's artifact root
# Diagnostics over training (flosssweep.train.diagnostics), at each child run's artifact root: one row
# per (epoch, stage, member, quantity, index); stages and quantities as listed here.
DIAGNOSTICS_ARTIFACT = "diagnostics.parquet"
DIAGNOSTIC_COLUMNS = ("config_key", "seed", "epoch", "stage", "member", "quantity", "index", "value")
DIAGNOSTIC_STAGES = ("initial", "pre", "train", "final")  # "train": a report during training
RETENTION_GATE = "retention_gate"  # per unit of a gated cell: the LSTM's forget gate, the GRU's update gate
DIAGNOSTIC_QUANTITIES = ("lyapunov", "jacobian_log_sv", "grad_norm_by_lag", RETENTION_GATE)
REPORT_ARTIFACT_DIR = "report"  # the report's outputs, under the parent run
# Schema metadata of the report's success_curves.parquet and horizon.parquet: the settings that made them.
REPORT_SETTINGS = "flosssweep.report_settings"

# -- what crosses a process boundary besides the metrics (flosssweep.protocol) -------------------
# A trial's final Ray result, worker -> driver: its records and its report history, as JSON strings
# (Ray's loggers leave strings alone), and whether it was replayed from a finished checkpoint.
RESULT_RECORDS = "records_json"
RESULT_HISTORY = "history_json"
RESULT_REPLAYED = "replayed"
EPOCH = "epoch"  # first key of every Ray result; ASHA's time attribute
RESULT_KEYS = (EPOCH, RESULT_RECORDS, RESULT_HISTORY, RESULT_REPLAYED)
# A progress result, worker -> driver, while a trial flosses between two reports (`train.loop.Progress`):
# no EPOCH, so that neither MLflow nor ASHA takes it for an epoch's result; the sweep's metric as last
# reported (None before the first report: Ray Tune wants its metric in every result).
PROGRESS_WHAT = "progress_what"  # "pre-flossing", "flossing episode 1/2"
PROGRESS_DONE = "progress_done"  # steps done
PROGRESS_TOTAL = "progress_total"  # of this many
PROGRESS_EPOCH = "progress_epoch"  # the epoch the trial is at
PROGRESS_KEYS = (PROGRESS_WHAT, PROGRESS_DONE, PROGRESS_TOTAL, PROGRESS_EPOCH)
# When the worker made a result (its time.time()), in every result: the status line's rates, since
# results can reach the driver in bursts. No "/" in it, so MLflow does not log it as a metric.
WORKER_TIME = "worker_time"
# meta.json of a checkpoint, worker -> the same trial's next start
CHECKPOINT_META_KEYS = ("epoch", "done", "launch", "config", "metrics", "history")
# the launch file in a Ray experiment directory, driver -> a later driver (--resume, --close)
LAUNCH_KEYS = ("parent_run_id", "experiment_id", "tracking_uri", "sweep", "fingerprint", "optuna", "extended")
OPTUNA_STUDY_KEYS = ("storage", "study_name")  # its `optuna` entry: where an Optuna search keeps its study
# A trial an earlier launch recorded, tracking store -> an --extend launch (TrackingStore.recorded_trials).
RECORDED_TRIAL_KEYS = ("trial_config", "config_key", "seed", "successes", "members")
# How the child runs of a launch ended, counted into the parent's tags (flosssweep.<count>).
OUTCOME_COUNTS = ("recorded", "stopped", "error", "abandoned", "open")
RAY_RESULT_KEYS = ("timestamp",)  # Ray's own keys of every result that the driver reads
# Environment, driver -> workers: the train function a trial calls ("module:function"), for tests
# that need a trainer which fails on purpose; unset, `flosssweep.train:train`.
TRAINER_ENV = "FLOSSSWEEP_TRAINER"

# -- Ray: what the driver reads from the environment or sets there, and how it words trial states --
RAY_ADDRESS_ENV = "RAY_ADDRESS"  # Ray's own: the cluster a driver without --address joins
# Ray's own, else: the file naming the last `ray start`'s cluster, under ray/ in Ray's temporary folder,
# which these variables set (RAY_TMPDIR; TMPDIR on Linux only), else /tmp
RAY_CURRENT_CLUSTER = "ray_current_cluster"
RAY_TMPDIR_ENVS = ("RAY_TMPDIR", "TMPDIR")
# Set before `import ray` where the driver starts a Ray of its own: every port on 127.0.0.1 only
# (docs/DESIGN.md, "What a reader sees").
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
TRIAL_STATES = {
    "TERMINATED": "finished",
    "ERROR": "failed",
    "RUNNING": "running",
    "PENDING": "pending",
    "PAUSED": "paused",
}

# MLflow's HTTP client retries a request for minutes by default (7 tries, backoff factor 2). A sweep's
# recorder waits for a store that stopped answering on its own terms (recorder.RETRY_SECONDS), so the
# driver's calls give up in seconds instead of stalling Ray Tune's loop; either variable, set, wins.
MLFLOW_BOUNDED_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
