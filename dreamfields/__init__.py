"""Dream Fields (Jain thesis ch. 4): zero-shot text-to-3D by optimising a NeRF against CLIP.

``dreamfields.system.DreamFieldsSystem`` is the LightningModule; see dreamfields/README.md.
"""
