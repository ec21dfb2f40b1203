"""Torch side of edge-ad: the DCGAN, checkpoints, training, the reference scorer, evaluation."""
from .checkpoint import load_generator, read_checkpoint, save_checkpoint
from .checkpoint_errors import CheckpointError
from .dcgan import Discriminator, GanConfig, Generator

__all__ = ["CheckpointError", "Discriminator", "GanConfig", "Generator", "load_generator",
           "read_checkpoint", "save_checkpoint"]
