"""DietNeRF (Jain thesis ch. 3): few-shot NeRF with CLIP's semantic consistency loss; see dietnerf/README.md."""
