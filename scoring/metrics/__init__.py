"""Metrics: holdout metrics of a trained model (``holdout``) and KPIs over a stream of labelled
predictions (``kpis``), shared by the feedback loop and the performance estimates."""
