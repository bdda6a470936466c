"""C3D (Tran et al., ICCV 2015) as in the common PyTorch port of the Sports-1M Caffe model (``c3d.pickle``).

A plain ``nn.Sequential`` with children ``conv1 relu1 pool1 conv2 relu2 pool2 conv3a relu3a conv3b relu3b
pool3 conv4a relu4a conv4b relu4b pool4 conv5a relu5a conv5b relu5b pool5 flatten fc6 relu6 drop6 fc7 relu7
drop7 fc8``. Convs are 3x3x3 with padding 1; ``pool1`` is 1x2x2, the others 2x2x2, ``pool5`` padded (0, 1, 1).

Parameter names and shapes are exactly the port's, so its state dict loads as is. As in the port, ``fc6`` is a
Linear over the flattened (512, 1, 4, 4) output of ``pool5`` (``flatten`` is ``blocks.Flatten`` on a map that
is not 1x1x1 here), so the input must be 16 x 112 x 112. The port's forward ends in a softmax; this model
returns logits.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cozoo.layers.blocks import Flatten
from cozoo.layers.heads import VideoClassifier
from cozoo.models.registry import ModelConfig, register_model

# (name, output channels, pool after it: None or (kernel, padding))
_CONVS: tuple[tuple[str, int, tuple[tuple[int, int, int], tuple[int, int, int]] | None], ...] = (
    ("1", 64, ((1, 2, 2), (0, 0, 0))),
    ("2", 128, ((2, 2, 2), (0, 0, 0))),
    ("3a", 256, None),
    ("3b", 256, ((2, 2, 2), (0, 0, 0))),
    ("4a", 512, None),
    ("4b", 512, ((2, 2, 2), (0, 0, 0))),
    ("5a", 512, None),
    ("5b", 512, ((2, 2, 2), (0, 1, 1))),
)
POOL5_SIZE = (1, 4, 4)  # (T, H, W) after pool5 for a 16 x 112 x 112 clip


def c3d(num_classes: int = 487, dropout: float = 0.5) -> nn.Sequential:
    """Build C3D for 16 x 112 x 112 clips."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = 3
    for name, channels, pool in _CONVS:
        layers[f"conv{name}"] = nn.Conv3d(in_channels, channels, 3, padding=1)
        layers[f"relu{name}"] = nn.ReLU()
        if pool is not None:
            kernel, padding = pool
            layers[f"pool{name[0]}"] = nn.MaxPool3d(kernel, stride=kernel, padding=padding)
        in_channels = channels
    layers["flatten"] = Flatten((in_channels, *POOL5_SIZE), needs="C3D needs 112 x 112 frames (16 per clip)")
    layers["fc6"] = nn.Linear(in_channels * POOL5_SIZE[0] * POOL5_SIZE[1] * POOL5_SIZE[2], 4096)
    layers["relu6"] = nn.ReLU()
    layers["drop6"] = nn.Dropout(dropout)
    layers["fc7"] = nn.Linear(4096, 4096)
    layers["relu7"] = nn.ReLU()
    layers["drop7"] = nn.Dropout(dropout)
    layers["fc8"] = nn.Linear(4096, num_classes)
    return VideoClassifier(layers, head_start="flatten", classifier_name="fc8")


register_model(
    ModelConfig(
        name="c3d",
        family="c3d",
        builder=c3d,
        frames=16,
        sampling_rate=1,
        train_crop=112,
        test_crop=112,
        # The port's recipe (predict.py): every frame resized to 112x200, columns 44:156 (the centre crop).
        test_resize=(112, 200),
        crop_rounding="floor",
        num_classes=487,
        # The port feeds raw 0-255 RGB values: (x / 255 - 0) / (1 / 255) = x.
        mean=(0.0, 0.0, 0.0),
        std=(1 / 255, 1 / 255, 1 / 255),
        dataset="sports1m",
        description=(
            "C3D (Tran et al. 2015), Sports-1M (487 classes), weights of the common PyTorch port "
            "(c3d.pickle). Input: 16 consecutive frames resized to 112x200, columns 44:156 (the port's "
            "recipe), "
            "RGB in raw 0-255 (the port's own demo subtracts no mean; the original Caffe model subtracted "
            "a Sports-1M mean clip, which is not reproduced here). Only 16x112x112 clips fit fc6."
        ),
    )
)
