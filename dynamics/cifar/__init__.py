"""CIFAR-10 validation path: the real SimSiam / BYOL pipeline with the toy models' switches.

Needs the ``cifar`` extra (flax, optax). Everything here runs in float32 with explicit dtypes,
whatever ``jax_enable_x64`` says. Modules: :mod:`.data` (safe loader of the
``cifar-10-batches-py`` pickles), :mod:`.augment` (on-device augmentation), :mod:`.model`
(CIFAR ResNet-18, projector, predictor), :mod:`.train` (config, loss, step, loop, checkpoints),
:mod:`.monitors` (std of z/||z||, kNN, eigenspace alignment, linear probe), :mod:`.figure`.
CLI: ``python -m dynamics.cifar --help``.
"""

import importlib

# Where each public name lives. Imported on first use, so that ``python -m dynamics.cifar
# --help`` and the argument checks run without the ``cifar`` extra (flax, optax).
_HOMES = {
    "augment_one": "augment", "two_views": "augment",
    "Cifar10": "data", "CifarDataError": "data", "load_batch": "data", "load_cifar10": "data",
    "write_batch": "data",
    "SiameseNet": "model", "widths": "model",
    "eigen_alignment": "monitors", "knn_accuracy": "monitors", "linear_probe": "monitors",
    "neg_cosine": "monitors", "normalized_std": "monitors",
    "Config": "config",
    "TrainState": "train", "init_state": "train", "make_train_step": "train",
    "siamese_loss": "train", "train": "train",
}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f"dynamics.cifar.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'dynamics.cifar' has no attribute {name!r}")


__all__ = [
    "Cifar10",
    "CifarDataError",
    "Config",
    "SiameseNet",
    "TrainState",
    "augment_one",
    "eigen_alignment",
    "init_state",
    "knn_accuracy",
    "linear_probe",
    "load_batch",
    "load_cifar10",
    "make_train_step",
    "neg_cosine",
    "normalized_std",
    "siamese_loss",
    "train",
    "two_views",
    "widths",
]
