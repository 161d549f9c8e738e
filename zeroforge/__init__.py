"""zeroforge: CLIP-Forge pretraining (voxel autoencoder + conditional flow) and ZeroForge's zero-shot
fine-tuning with CLIP and contrastive losses through a differentiable voxel renderer (see README.md).

LightningModules: :class:`zeroforge.ae_system.CLIPForgeAutoencoderSystem` (stage 1),
:class:`zeroforge.flow_system.CLIPForgeFlowSystem` (stage 2), :class:`zeroforge.system.ZeroForgeSystem`
(fine-tuning). Commands: ``python -m zeroforge.generate`` (text -> meshes), ``python -m zeroforge.evaluate``.
"""
