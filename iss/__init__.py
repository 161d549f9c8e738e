"""ISS — "Image as Stepping Stone for Text-Guided 3D Shape Generation" (Liu et al., ICLR 2023); see iss/README.md.

Stages: :class:`iss.svr.SVRSystem` (DVR single-view reconstruction), :class:`iss.stage1.Stage1System` (CLIP image →
shape-space mapper), :class:`iss.stage2.Stage2System` (per-prompt test-time optimisation of the mapper),
:class:`iss.stylize.StylizeSystem` (text-guided stylisation).
"""
