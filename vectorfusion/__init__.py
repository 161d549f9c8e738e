"""VectorFusion (thesis ch. 6): text -> SVG with latent SDS through a differentiable rasterizer; see README.md."""
