"""Kinetics-style datasets: annotation CSV + video folder, subsets, label maps and a clip Dataset.

Annotation CSV columns (extra columns are ignored): ``label,youtube_id,time_start,time_end,split``.
A row's video is ``<ytid>_<start:06d>_<end:06d>.<ext>`` looked up as ``<root>/<split>/<label>/<file>``,
``<root>/<label>/<file>``, ``<root>/<file>`` (flat), and otherwise anywhere under ``root`` (the folder is
indexed once, so label folders spelled with underscores instead of spaces are found too).
Missing videos are dropped at construction with one summary warning; corrupt videos are reported with
one warning each and skipped (see `KineticsDataset`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cozoo.data.samplers import (
    ClipSampler,
    RandomClipSampler,
    resampled_length,
    to_video_frames,
)
from cozoo.data.transforms import to_float_clip
from cozoo.data.video import PathLike, VideoDecodeError, VideoEndedEarly, VideoInfo, probe_video, read_frames
from cozoo.timeline import samples_by_time

REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class AnnotationError(ValueError):
    """An annotation CSV, class list or label map is malformed or inconsistent."""


class MissingVideoWarning(UserWarning):
    """Some annotated videos are not in the video folder."""


class CorruptVideoWarning(UserWarning):
    """A video file cannot be decoded and is skipped."""


@dataclass(frozen=True)
class VideoRecord:
    """One annotation row."""

    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str

    @property
    def stem(self) -> str:
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"

    @property
    def filename(self) -> str:
        return f"{self.stem}.mp4"


def _parse_seconds(value: str, column: str, where: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise AnnotationError(f"{where}: column {column!r} is not a number: {value!r}") from None
    if not number.is_integer() or number < 0:
        raise AnnotationError(f"{where}: column {column!r} must be whole seconds >= 0, got {value!r}")
    return int(number)


def read_annotations(path: PathLike, split: str | None = None) -> list[VideoRecord]:
    """Parse a Kinetics annotation CSV (optionally keeping one split); errors name the file and problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {str(path)!r}")
    try:  # "utf-8-sig": spreadsheets save UTF-8 CSVs with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text ({err}); save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise AnnotationError(
            f"{path}: missing required column(s) {', '.join(missing)}; found columns "
            f"{header or '(none)'}; expected {','.join(REQUIRED_COLUMNS)}"
        )
    reader.fieldnames = header
    records = []
    for line, row in enumerate(reader, start=2):
        where = f"{path}:{line}"
        values = {column: (row.get(column) or "").strip() for column in REQUIRED_COLUMNS}
        empty = [column for column in ("label", "youtube_id") if not values[column]]
        if empty:
            raise AnnotationError(f"{where}: empty value in column(s) {', '.join(empty)}")
        record = VideoRecord(
            label=values["label"],
            youtube_id=values["youtube_id"],
            time_start=_parse_seconds(values["time_start"], "time_start", where),
            time_end=_parse_seconds(values["time_end"], "time_end", where),
            split=values["split"],
        )
        if split is None or record.split == split:
            records.append(record)
    return records


def write_annotations(path: PathLike, records: Sequence[VideoRecord]) -> Path:
    """Write records as a Kinetics annotation CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUIRED_COLUMNS)
        for r in records:
            writer.writerow([r.label, r.youtube_id, r.time_start, r.time_end, r.split])
    return path


def index_video_folder(root: PathLike) -> dict[str, Path]:
    """Map each video file's stem to its path, for every video file under ``root`` (first one wins)."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, Path(folder) / name)
    return found


def resolve_video_paths(
    records: Sequence[VideoRecord], root: PathLike
) -> tuple[list[tuple[VideoRecord, Path]], list[VideoRecord]]:
    """Find each record's video under ``root`` (nested or flat layout): ``(found pairs, missing records)``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {str(root)!r}")
    index: dict[str, Path] | None = None
    found, missing = [], []
    for record in records:
        candidates = (
            root / record.split / record.label / record.filename,
            root / record.label / record.filename,
            root / record.filename,
        )
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            if index is None:
                index = index_video_folder(root)
            path = index.get(record.stem)
        if path is None:
            missing.append(record)
        else:
            found.append((record, path))
    return found, missing


def read_class_list(path: PathLike) -> list[str]:
    """Class names, one per line; blank lines and lines starting with ``#`` are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list file not found: {str(path)!r}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise AnnotationError(f"{path}: class list is empty")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnnotationError(f"{path}: duplicate class names {duplicates}")
    return names


def select_subset(
    records: Sequence[VideoRecord],
    *,
    classes: Sequence[str] | None = None,
    class_file: PathLike | None = None,
    num_classes: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> list[VideoRecord]:
    """Keep the records of chosen classes, then at most ``per_class`` videos per class.

    Classes come from ``classes`` or ``class_file`` (names must exist in the records) or are the first
    ``num_classes`` class names in sorted order. ``per_class`` draws videos at random with ``seed``
    (deterministic); the original row order is kept.
    """
    if sum(x is not None for x in (classes, class_file, num_classes)) > 1:
        raise ValueError("pass only one of classes, class_file, num_classes")
    present = sorted({r.label for r in records})
    if class_file is not None:
        classes = read_class_list(class_file)
    if classes is not None:
        unknown = [c for c in classes if c not in present]
        if unknown:
            raise AnnotationError(f"class(es) not in the annotations: {unknown}")
        chosen = set(classes)
    elif num_classes is not None:
        if not 1 <= num_classes <= len(present):
            raise ValueError(f"num_classes must be in 1..{len(present)}, got {num_classes}")
        chosen = set(present[:num_classes])
    else:
        chosen = set(present)
    kept = [r for r in records if r.label in chosen]
    if per_class is None:
        return kept
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    by_class: dict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(kept):
        by_class[record.label].append(position)
    rng = random.Random(seed)
    keep_positions: set[int] = set()
    for label in sorted(by_class):
        positions = by_class[label]
        keep_positions.update(positions if len(positions) <= per_class else rng.sample(positions, per_class))
    return [r for position, r in enumerate(kept) if position in keep_positions]


def build_label_map(labels: Sequence[str]) -> dict[str, int]:
    """Class name -> index, classes in sorted order (the Kinetics convention)."""
    return {name: index for index, name in enumerate(sorted(set(labels)))}


def save_label_map(path: PathLike, label_map: dict[str, int]) -> Path:
    """Write a label map as JSON: ``{"classes": [name of class 0, name of class 1, ...]}``."""
    _check_label_map(label_map, "label map")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = sorted(label_map, key=label_map.__getitem__)
    path.write_text(json.dumps({"classes": classes}, indent=1) + "\n", encoding="utf-8")
    return path


def load_label_map(path: PathLike) -> dict[str, int]:
    """Read a label map written by `save_label_map`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {str(path)!r}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: not a JSON label map ({err})") from None
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise AnnotationError(f"{path}: expected {{\"classes\": [names...]}}")
    duplicates = sorted(name for name, count in Counter(classes).items() if count > 1)
    if duplicates:
        raise AnnotationError(f"{path}: duplicate class names {duplicates}")
    label_map = {name: index for index, name in enumerate(classes)}
    _check_label_map(label_map, str(path))
    return label_map


def _check_label_map(label_map: dict[str, int], where: str) -> None:
    if sorted(label_map.values()) != list(range(len(label_map))):
        raise AnnotationError(f"{where}: indices must be 0..{len(label_map) - 1}, each used once")


def save_subset(
    run_dir: PathLike, records: Sequence[VideoRecord], label_map: dict[str, int]
) -> tuple[Path, Path]:
    """Save the chosen records (``subset.csv``) and the label map (``label_map.json``) in a run folder."""
    run_dir = Path(run_dir)
    csv_path = write_annotations(run_dir / "subset.csv", records)
    return csv_path, save_label_map(run_dir / "label_map.json", label_map)


#: Decoded frames a test dataset keeps to cut all views of one video from one decoding pass.
MULTIVIEW_CACHE_BYTES = 256 * 2**20


class KineticsDataset(Dataset):
    """Clips of Kinetics-layout videos: item ``i`` is ``(clip, label)``, clip a float ``(3, T, H, W)`` tensor.

    Items are views: every video gives ``sampler.clips_per_video`` clips times ``transform.num_crops``
    spatial crops (1 for training). `view` maps an item to ``(video, clip, crop)`` indices; with
    ``return_video_index=True`` items are ``(clip, label, video_index)`` for per-video aggregation.

    Missing files are dropped at construction (one `MissingVideoWarning`, list in ``missing``).
    ``probe=True`` also opens every video up front: undecodable ones are dropped (one `CorruptVideoWarning`
    each, paths in ``corrupt``) and frame counts are cached — use it for evaluation so the set of videos
    is exact. Otherwise a video found corrupt while loading is reported once (per process) and replaced
    by another video (random for training samplers, the next one otherwise), so a run never crashes on
    a bad file; with ``return_video_index=True`` such a stand-in view carries video index -1, so that
    per-video aggregation leaves it out rather than scoring it as the failed video or its neighbour.

    ``target_fps``: sample clips by time rather than frame index, on a timeline at that rate (each video's
    rate is probed); ``sampling_rate`` then counts frames of that timeline, as in the reference
    implementations (e.g. PySlowFast's 30 fps).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        video_root: PathLike,
        sampler: ClipSampler,
        transform: Callable[..., torch.Tensor] | None = None,
        *,
        label_map: dict[str, int] | None = None,
        probe: bool = False,
        return_video_index: bool = False,
        max_retries: int = 10,
        target_fps: float | None = None,
    ) -> None:
        if target_fps is not None and not 0 < target_fps < float("inf"):
            raise ValueError(f"target_fps must be positive (None: sample by frame index), got {target_fps}")
        self.target_fps = target_fps
        self.label_map = build_label_map([r.label for r in records]) if label_map is None else dict(label_map)
        _check_label_map(self.label_map, "label map")
        unknown = sorted({r.label for r in records} - set(self.label_map))
        if unknown:
            more = " ..." if len(unknown) > 10 else ""
            raise AnnotationError(f"label(s) not in the label map: {unknown[:10]}{more}")
        self.sampler = sampler
        self.transform = transform
        self.num_crops = int(getattr(transform, "num_crops", 1))
        self.return_video_index = return_video_index
        self.max_retries = max_retries
        self.videos, self.missing = resolve_video_paths(records, video_root)
        if self.missing:
            shown = ", ".join(r.filename for r in self.missing[:5])
            warnings.warn(
                f"{len(self.missing)} of {len(records)} annotated videos not found under {str(video_root)!r} "
                f"and skipped (e.g. {shown}); see dataset.missing",
                MissingVideoWarning,
                stacklevel=2,
            )
        self.corrupt: list[str] = []
        self._num_frames: dict[int, int] = {}
        self._fps: dict[int, float] = {}
        self._frame_bytes: dict[int, int] = {}  # of one decoded RGB frame
        self._bad: set[int] = set()
        if probe:
            self._probe_all()
        if not self.videos:
            raise RuntimeError(f"no usable videos under {str(video_root)!r} ({len(records)} annotated)")

    def _probe_all(self) -> None:
        kept = []
        for record, path in self.videos:
            try:
                info = probe_video(path)
                read_frames(path, [0])
            except (FileNotFoundError, VideoDecodeError) as err:
                self.corrupt.append(str(path))
                warnings.warn(f"skipping video: {err}", CorruptVideoWarning, stacklevel=3)
                continue
            self._remember(len(kept), info)
            kept.append((record, path))
        self.videos = kept

    @property
    def classes(self) -> list[str]:
        return sorted(self.label_map, key=self.label_map.__getitem__)

    def __len__(self) -> int:
        return len(self.videos) * self.sampler.clips_per_video * self.num_crops

    def view(self, index: int) -> tuple[int, int, int]:
        """``(video_index, clip_index, crop_index)`` of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} outside 0..{len(self) - 1}")
        per_video = self.sampler.clips_per_video * self.num_crops
        video, rest = divmod(index, per_video)
        clip, crop = divmod(rest, self.num_crops)
        return video, clip, crop

    def _remember(self, video: int, info: VideoInfo) -> None:
        self._num_frames[video], self._fps[video] = info.num_frames, info.fps
        self._frame_bytes[video] = info.width * info.height * 3

    def _clip_indices(self, video: int, clip: int) -> list[int]:
        """Video frames of clip ``clip``: sampled by frame index, or with ``target_fps`` on that timeline."""
        count, fps = self._num_frames[video], self._fps.get(video, 0.0)
        if not samples_by_time(fps, self.target_fps):
            return self.sampler(count, clip)
        indices = self.sampler(resampled_length(count, fps, self.target_fps), clip)  # type: ignore[arg-type]
        return to_video_frames(indices, fps, self.target_fps, count)  # type: ignore[arg-type]

    def _load(self, video: int, clip: int, crop: int) -> torch.Tensor:
        _, path = self.videos[video]
        if video not in self._num_frames:
            self._remember(video, probe_video(path))
        try:
            frames = self._decode(video, path, self._clip_indices(video, clip))
        except VideoEndedEarly as short:  # the container overstated its length: sample within what decodes
            warnings.warn(f"{short.path!r} decodes {short.decoded_frames} of the {self._num_frames[video]} "
                          "frames it declares; its clips are taken from those", CorruptVideoWarning,
                          stacklevel=4)
            self._num_frames[video] = short.decoded_frames
            frames = self._decode(video, path, self._clip_indices(video, clip))
        if self.transform is None:
            return to_float_clip(frames)
        return self.transform(frames, crop) if self.num_crops > 1 else self.transform(frames)

    def _decode(self, video: int, path: Path, indices: list[int]) -> torch.Tensor:
        """The frames at ``indices``. With several views per video (test clips x crops), consecutive items
        are views of one video: the frames of all its clips are decoded in one pass (of one clip, for the
        crops of a clip, when all would exceed `MULTIVIEW_CACHE_BYTES`) and kept until other frames are
        asked for, so a video is decoded once, not once per view."""
        views = self.sampler.clips_per_video * self.num_crops
        if isinstance(self.sampler, RandomClipSampler) or views == 1:
            return read_frames(path, indices)
        cached = self.__dict__.get("_decoded")
        if cached is None or cached[0] != video or not set(indices) <= cached[1].keys():
            clips = range(self.sampler.clips_per_video)
            wanted = sorted({i for c in clips for i in self._clip_indices(video, c)})
            if len(wanted) * self._frame_bytes.get(video, 0) > MULTIVIEW_CACHE_BYTES:
                wanted = sorted(set(indices))
            self.__dict__["_decoded"] = None  # free the previous video's frames before decoding
            frames = dict(zip(wanted, read_frames(path, wanted), strict=True))
            cached = self.__dict__["_decoded"] = (video, frames)
        return torch.stack([cached[1][i] for i in indices])

    def _report(self, video: int, err: Exception) -> None:
        if video not in self._bad:
            self._bad.add(video)
            warnings.warn(f"skipping video: {err}", CorruptVideoWarning, stacklevel=3)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, int]:
        requested, clip, crop = self.view(index)
        video = requested
        for _ in range(self.max_retries + 1):
            if video not in self._bad:
                try:
                    data = self._load(video, clip, crop)
                except (FileNotFoundError, VideoDecodeError) as err:
                    self._report(video, err)
                else:
                    label = self.label_map[self.videos[video][0].label]
                    if not self.return_video_index:
                        return data, label
                    return data, label, (video if video == requested else -1)
            if isinstance(self.sampler, RandomClipSampler):
                video = int(torch.randint(0, len(self.videos), (1,)))
            else:
                video = (video + 1) % len(self.videos)
        raise RuntimeError(f"item {index}: {self.max_retries + 1} videos in a row could not be decoded")
