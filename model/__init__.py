"""One Fashion-MNIST CNN: data, network, augmentation, training. No Ray here, on purpose."""

from model.augment import Augmentation, augment
from model.config import PRESETS, Config
from model.data import CLASSES, DataError, Split
from model.net import build, count_parameters
from model.trainer import EpochMetrics, Trainer, train

__all__ = [
    "PRESETS", "Config", "build", "count_parameters", "Augmentation", "augment",
    "CLASSES", "DataError", "Split", "EpochMetrics", "Trainer", "train",
]
