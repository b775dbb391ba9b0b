"""Hyperparameter tuning with Optuna: studies whose trials are federations
(``fedpilot tune``, :mod:`.study`), pruned after any round, and learners that tune their
local settings on their own data (:mod:`.learner`).

Nothing is imported here: a learner's chain imports :mod:`.learner` alone, and Optuna
only when it tunes.
"""
