"""Monitoring: the reference profile, the prediction log, drift and live scores."""
