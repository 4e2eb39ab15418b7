"""CIFAR-10 validation path: the real SimSiam / BYOL pipeline with the toy models' switches.

Needs the ``cifar`` extra (flax, optax). Everything here runs in float32 with explicit dtypes,
whatever ``jax_enable_x64`` says. Modules: :mod:`.data` (safe loader of the
``cifar-10-batches-py`` pickles), :mod:`.augment` (on-device augmentation), :mod:`.model`
(CIFAR ResNet-18, projector, predictor), :mod:`.train` (config, loss, step, loop, checkpoints),
:mod:`.monitors` (std of z/||z||, kNN, eigenspace alignment, linear probe), :mod:`.figure`.
CLI: ``python -m dynamics.cifar --help``.
"""

from dynamics.cifar.augment import augment_one, two_views
from dynamics.cifar.data import Cifar10, CifarDataError, load_batch, load_cifar10, write_batch
from dynamics.cifar.model import SiameseNet, widths
from dynamics.cifar.monitors import eigen_alignment, knn_accuracy, linear_probe, neg_cosine, normalized_std
from dynamics.cifar.train import Config, TrainState, init_state, make_train_step, siamese_loss, train

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
