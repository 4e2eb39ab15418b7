"""The toy's predictions for the real pipeline, declared before any CIFAR run.

:mod:`dynamics.predict.mapping` maps a CIFAR setting's hyperparameters onto the linear toy of
docs/theory.md section 3 and predicts its outcome from the per-mode closed forms;
:mod:`dynamics.predict.settings` lists the settings. Neither reads a CIFAR outcome.
"""
