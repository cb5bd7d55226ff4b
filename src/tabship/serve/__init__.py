"""Serving: the web form and JSON API over one Predictor (no scikit-learn imported here)."""
