"""The names that cross module boundaries: metrics, record columns, MLflow tags and artifacts.

Every writer and every reader imports these; nothing else spells them. A test runs both trainers and
fails when one emits a metric or a record column missing here, or when a name here is emitted by
neither (so a sweep file's `metric` can only name what some trainer reports).
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
IDENTITY_COLUMNS = ("sweep", "trial_id", "member", "seed", "config_key")
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
# (flosssweep.streams). Rows of one seed, member and config_key but another version are other realizations.
RECORDS_VERSION = 2

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
END_REASON = "flosssweep.end_reason"  # parent: why a launch ended without finishing (refused, interrupted, closed)
OPTUNA_STORAGE = "flosssweep.optuna_storage"  # parent of an Optuna search: the database of its study
OPTUNA_STUDY = "flosssweep.optuna_study"  # ... and the study's name in it
TRIAL_ID = "flosssweep.trial_id"
TRIAL_CONFIG = "flosssweep.trial_config"  # child: its varied values as JSON (finds a re-created trial's run)
CONFIG_KEY = "flosssweep.config_key"
RECORDED = "flosssweep.recorded"  # child: "true" once its records are logged
STATUS = "flosssweep.status"  # child: stopped, error or abandoned when it has no records
ENDED_STATUSES = ("stopped", "error", "abandoned")
RETRIES = "flosssweep.retries"
SUMMARY_TAGS = ("successes", "members", "diverged", "status")  # child: flosssweep.<name>
TAG_PREFIX = "flosssweep."  # also the prefix of the report's metadata in its Parquet files
RECORDS_ARTIFACT = "records.parquet"  # per-member records, at each child run's artifact root
REPORT_ARTIFACT_DIR = "report"  # the report's outputs, under the parent run
