"""The Sacred experiments and what runs them; the only place of this project that imports Sacred.

* ``train.py`` (``student_teacher``), ``flows2d.py`` (``particle_flow``), ``dmmd.py`` (``dmmd``): the
  experiments, run as scripts (``python experiments/train.py``) or imported (a sweep's task);
* :mod:`experiments.registry`: the list of experiments the sweeps read;
* :mod:`experiments.runs`: how a script's runs are checked, started, trained and stored;
* :mod:`experiments.mlflow_observer`: the ``--mlflow`` observer; :mod:`experiments.flow_pictures`,
  :mod:`experiments.quiet`: pictures of flows, the filters of library noise;
* ``configs/`` (named configs) and ``sweeps/`` (sweep files), installed with the package.
"""
