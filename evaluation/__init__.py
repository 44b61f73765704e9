"""Evaluation: the scorer (bench.py and training validation), inference (full, tiled, self-ensemble), reports."""
