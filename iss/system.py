"""ISS's LightningModules, one per stage (the suite's ``system.py`` entry point for this package).

* :class:`~iss.svr.SVRSystem` — stage 0: DVR single-view reconstruction (``experiments/iss_svr.yaml``);
* :class:`~iss.stage1.Stage1System` — stage 1: CLIP image → shape-space mapper (``experiments/iss_stage1.yaml``);
* :class:`~iss.stage2.Stage2System` — stage 2: per-prompt text → shape optimisation (``experiments/iss.yaml``);
* :class:`~iss.stylize.StylizeSystem` — optional text-guided stylisation (``experiments/iss_stylize.yaml``).
"""

from iss.stage1 import Stage1System
from iss.stage2 import Stage2System
from iss.stylize import StylizeSystem
from iss.svr import SVRSystem

__all__ = ["SVRSystem", "Stage1System", "Stage2System", "StylizeSystem"]
