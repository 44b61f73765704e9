"""Evaluation: the scorer (bench.py and training validation), inference (full, tiled, self-ensemble), reports.

Map: scorer.py (THE scorer), inference.py (super_resolve and THE tile routine), benchmark.py (a bench run),
checkpoints.py (finding and loading checkpoints), reports.py (tables, JSON, plots), upscale.py / video.py
(demo.py's library). Imports go down only: evaluation never imports training or a CLI.
"""
