"""PureCLIPNeRF: voxel-grid NeRFs (Vox Exp, Vox Imp) under pure CLIP guidance, with the paper's augmentation
study (see pureclipnerf/README.md and shared/specs/pureclipnerf.md)."""
