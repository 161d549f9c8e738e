"""Fields: encodings, MLP and voxel-grid radiance fields sharing the :class:`Field` interface."""

from common.fields.base import Field, FieldOutput
from common.fields.encodings import (
    Encoding,
    FourierEncoding,
    IntegratedPositionalEncoding,
    PositionalEncoding,
    RandomFourierEncoding,
)
from common.fields.mlp import PlainMLP, ResidualMLP
from common.fields.nerf import MLPField
from common.fields.voxel import VoxelGridField, trilinear_sample

__all__ = [
    "Encoding", "Field", "FieldOutput", "FourierEncoding", "IntegratedPositionalEncoding", "MLPField",
    "PlainMLP", "PositionalEncoding", "RandomFourierEncoding", "ResidualMLP", "VoxelGridField", "trilinear_sample",
]
