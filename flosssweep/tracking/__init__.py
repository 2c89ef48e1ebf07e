"""MLflow: where a sweep is recorded, its parent run per launch and the child-run writer of the driver."""
