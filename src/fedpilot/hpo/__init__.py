"""Hyperparameter tuning with Optuna: studies whose trials are federations
(``fedpilot tune``), pruned after any round, and learners that tune their local
settings on their own data."""

from fedpilot.hpo.study import TuneResult, best_spec_path, best_trials, default_storage, tune

__all__ = ["TuneResult", "best_spec_path", "best_trials", "default_storage", "tune"]
