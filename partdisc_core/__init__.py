"""partdisc: unsupervised part discovery via dual representation alignment (Xia et al., TPAMI).

    from partdisc_core import load_model
    model = load_model()                  # the shipped face model (K = 16)
    out = model.predict("face.jpg")       # out.masks, out.labels, out.attention, out.parts
    swap = model.swap_parts("a.jpg", "b.jpg", parts=[1, 2])
"""
from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model, read_checkpoint, save_model
from .config import PartDiscConfig, apply_overrides
from .inputs import ImageInputError, read_image, to_image_tensors, to_uint8
from .losses import ArcFace, PartDiscLoss, area_loss, concentration_loss, swap_colour_loss
from .model import PartDiscModel, Prediction, SwapResult, TrainOutput, part_probabilities, synthesize

__version__ = "0.1.0"

__all__ = [
    "ArcFace", "CheckpointError", "DEFAULT_CHECKPOINT", "ImageInputError", "PartDiscConfig", "PartDiscLoss",
    "PartDiscModel", "Prediction", "SwapResult", "TrainOutput", "apply_overrides", "area_loss",
    "concentration_loss", "load_model", "part_probabilities", "read_checkpoint", "read_image", "save_model",
    "swap_colour_loss", "synthesize", "to_image_tensors", "to_uint8",
]
