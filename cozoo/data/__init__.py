"""Video data: PyAV decoding, Kinetics-layout datasets, clip samplers, transforms, synthetic motion videos."""

from cozoo.data.kinetics import (
    AnnotationError,
    CorruptVideoWarning,
    KineticsDataset,
    MissingVideoWarning,
    VideoRecord,
    build_label_map,
    load_label_map,
    read_annotations,
    read_class_list,
    save_label_map,
    save_subset,
    select_subset,
    write_annotations,
)
from cozoo.data.loader import build_dataloader, build_dataset
from cozoo.data.samplers import RandomClipSampler, UniformClipSampler
from cozoo.data.synthetic import (
    DEFAULT_CLASSES,
    SYNTHETIC_CLASSES,
    generate_synthetic_dataset,
    render_clip,
    reversed_class,
    write_synthetic_stream,
    write_synthetic_video,
)
from cozoo.data.transforms import VideoTransform, eval_transform, train_transform
from cozoo.data.video import VideoDecodeError, VideoInfo, iter_frames, probe_video, read_frames, write_video

__all__ = [
    "DEFAULT_CLASSES",
    "SYNTHETIC_CLASSES",
    "AnnotationError",
    "CorruptVideoWarning",
    "KineticsDataset",
    "MissingVideoWarning",
    "RandomClipSampler",
    "UniformClipSampler",
    "VideoDecodeError",
    "VideoInfo",
    "VideoRecord",
    "VideoTransform",
    "build_dataloader",
    "build_dataset",
    "build_label_map",
    "eval_transform",
    "generate_synthetic_dataset",
    "iter_frames",
    "load_label_map",
    "probe_video",
    "read_annotations",
    "read_class_list",
    "read_frames",
    "render_clip",
    "reversed_class",
    "save_label_map",
    "save_subset",
    "select_subset",
    "train_transform",
    "write_annotations",
    "write_synthetic_stream",
    "write_synthetic_video",
    "write_video",
]
