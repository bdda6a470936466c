"""Continual layers and containers: clip mode, step mode and one set of parameters (see `base`)."""

from cozoo.continual.base import ContinualModule, StreamError
from cozoo.continual.containers import CoIdentity, CoResidual, CoSequential
from cozoo.continual.conv import CoConv3d
from cozoo.continual.convert import configure_pool_window, convert_module, register_continual, to_continual
from cozoo.continual.graph import CudaGraphStepper
from cozoo.continual.multipath import CoConcatPathways, CoFuseFastToSlow, CoPathways, CoSplitPathways
from cozoo.continual.pool import CoAvgPool3d, CoGlobalAvgPool3d, CoMaxPool3d
from cozoo.continual.recurrent import CoFrameLSTM
from cozoo.continual.stateless import CoFlatten, CoLinear, CoPerFrame, CoSqueezeExcitation, CoWindowMean
from cozoo.continual.stream import Prediction, Stream
from cozoo.continual.timing import FrameStamp, Timing, timing

__all__ = [
    "CoAvgPool3d",
    "CoConcatPathways",
    "CoFuseFastToSlow",
    "CoPathways",
    "CoSplitPathways",
    "CudaGraphStepper",
    "FrameStamp",
    "Timing",
    "CoConv3d",
    "CoFlatten",
    "CoFrameLSTM",
    "CoGlobalAvgPool3d",
    "CoIdentity",
    "CoLinear",
    "CoMaxPool3d",
    "CoPerFrame",
    "CoResidual",
    "CoSequential",
    "CoSqueezeExcitation",
    "CoWindowMean",
    "Prediction",
    "Stream",
    "ContinualModule",
    "StreamError",
    "configure_pool_window",
    "convert_module",
    "register_continual",
    "timing",
    "to_continual",
]
