"""The Sacred experiments (train.py, flows2d.py, dmmd.py), their helper (sacred_runs.py), named configs and sweep files.

Run the scripts directly (``python experiments/train.py``); installed, this folder is the package
``studentteacher_experiments``, which is how :mod:`studentteacher.sweep` finds it outside a checkout.
"""
