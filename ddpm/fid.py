"""FID through torchmetrics, only where real Inception weights are present offline.

``torchmetrics.image.fid.FrechetInceptionDistance`` uses torch-fidelity's Inception-v3 (FID's reference
network, weights ``pt_inception-2015-12-05-6726825d.pth`` in the torch hub checkpoint folder). When
torch-fidelity is not installed or the weights file is absent, FID is *skipped with a reason*: a score
from a randomly initialised network would be meaningless.
"""

import os
from typing import Optional

import torch

INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def fid_unavailable_reason() -> Optional[str]:
    """None when FID can run offline, else a sentence saying why not and how to fix it."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return "FID skipped: torch-fidelity is not installed (pip install torch-fidelity)."
    hub = os.path.join(torch.hub.get_dir(), "checkpoints", INCEPTION_WEIGHTS)
    if not os.path.isfile(hub):
        return (f"FID skipped: Inception weights not found at {hub}; download {INCEPTION_WEIGHTS} from the "
                "torch-fidelity release page on a networked machine and copy it there.")
    return None


def make_fid(feature: int = 2048):
    """A ``FrechetInceptionDistance`` metric (``normalize=True``: images in [0, 1]), or None with the reason."""
    reason = fid_unavailable_reason()
    if reason is not None:
        return None, reason
    from torchmetrics.image.fid import FrechetInceptionDistance

    try:
        return FrechetInceptionDistance(feature=feature, normalize=True), None
    except Exception as e:  # pragma: no cover - depends on the local install
        return None, f"FID skipped: could not build the Inception network ({type(e).__name__}: {e})."
