"""SJC: Score Jacobian Chaining (Wang et al., CVPR 2023) and DreamFusion-style SDS on its voxel field.

See ``sjc/README.md``. Parts: :class:`sjc.field.SJCVoxelField`, :class:`sjc.background.SphericalBackground`,
:class:`sjc.renderer.SJCRenderer`, :class:`sjc.cameras.SJCCameraSampler`, :class:`sjc.system.SJCSystem`,
:class:`sjc.callbacks.SJCExport`; 2D experiments in :mod:`sjc.paas2d`.
"""
