"""Tracking and shipping: everything said to MLflow (``runs``; ``outbox`` for a store that is
down, ``names`` for what MLflow refuses, ``provenance`` for git and DVC), and the shipped model
(``serving``, the bundle; ``mlflow_model``, the MLflow model around it)."""
