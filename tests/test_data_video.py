import struct

import av
import numpy as np
import pytest
import torch

from cozoo.data.video import VideoDecodeError, iter_frames, probe_video, read_frames, write_video


def _ramp_video(frames: int = 12, size: int = 32) -> np.ndarray:
    """Frame i is a flat grey of level 20 * i: easy to identify after lossy coding."""
    levels = np.arange(frames, dtype=np.uint8) * 20
    return np.broadcast_to(levels[:, None, None, None], (frames, size, size + 16, 3)).copy()


@pytest.fixture(scope="module")
def ramp_path(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "sub" / "ramp.mp4", _ramp_video(), fps=10)


def _level(frames: torch.Tensor) -> list[int]:
    return [round(float(f.float().mean()) / 20) for f in frames]


def test_probe_reports_count_rate_and_size(ramp_path):
    info = probe_video(ramp_path)
    assert (info.num_frames, info.fps, info.height, info.width) == (12, 10.0, 32, 48)


def test_read_all_and_selected_frames(ramp_path):
    everything = read_frames(ramp_path)
    assert everything.shape == (12, 32, 48, 3) and everything.dtype == torch.uint8
    assert _level(everything) == list(range(12))
    picked = read_frames(ramp_path, [5, 1, 1, 11])
    assert _level(picked) == [5, 1, 1, 11]
    assert torch.equal(picked[0], everything[5])


def test_index_just_past_the_end_gets_last_frame(ramp_path):
    assert _level(read_frames(ramp_path, [10, 11, 12, 13])) == [10, 11, 11, 11]  # count slack


def test_index_far_past_the_end_is_a_truncated_video(ramp_path):
    with pytest.raises(VideoDecodeError, match="ends after 12 decodable frames, before requested frame 20"):
        read_frames(ramp_path, [0, 20])


def _raw_h264(path, height: int, width: int, levels: range) -> bytes:
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for level in levels:
            image = np.full((height, width, 3), level, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path.read_bytes()


def test_resolution_change_part_way_is_scaled_to_the_first_frame_size(tmp_path):
    joined = tmp_path / "switch.h264"
    joined.write_bytes(_raw_h264(tmp_path / "a.h264", 32, 48, range(0, 120, 20))
                       + _raw_h264(tmp_path / "b.h264", 64, 96, range(120, 240, 20)))
    frames = read_frames(joined)
    assert frames.shape == (12, 32, 48, 3)
    assert _level(frames) == list(range(12))
    assert [f.shape for f in iter_frames(joined)] == [(32, 48, 3)] * 12


def _pyav_rgb(path, **size) -> list[np.ndarray]:
    """Every frame as PyAV converts it on its own (a conversion context per frame): the reference."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24", **size) for frame in container.decode(video=0)]


def test_decoded_frames_equal_pyav_own_conversion(tmp_path):
    """`read_frames` and `iter_frames` convert with one reformatter for all frames (fast for small videos):
    the pixels are PyAV's per-frame conversion's, for a textured video and for frames scaled back to the
    first frame's size."""
    noise = np.random.default_rng(0).integers(0, 256, size=(6, 32, 48, 3), dtype=np.uint8)
    path = write_video(tmp_path / "noise.mp4", noise)
    reference = np.stack(_pyav_rgb(path))
    assert np.array_equal(read_frames(path).numpy(), reference)
    assert np.array_equal(np.stack([f.numpy() for f in iter_frames(path)]), reference)
    joined = tmp_path / "switch.h264"
    joined.write_bytes(_raw_h264(tmp_path / "a.h264", 32, 48, range(0, 60, 20))
                       + _raw_h264(tmp_path / "b.h264", 64, 96, range(60, 120, 20)))
    scaled = np.stack(_pyav_rgb(joined, width=48, height=32))
    assert np.array_equal(read_frames(joined).numpy(), scaled)


def test_rotation_metadata_turns_frames_upright(tmp_path):
    image = np.zeros((4, 32, 48, 3), np.uint8)
    image[:, :16, :16] = 250  # a bright top-left corner
    path = write_video(tmp_path / "upright.mp4", image)
    data = bytearray(path.read_bytes())
    matrix = data.find(b"tkhd") + 44  # version-0 track header: the display matrix follows 40 bytes of fields
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # 90° clockwise
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(bytes(data))
    frames = read_frames(rotated)
    assert frames.shape == (4, 48, 32, 3)
    corners = frames[0, :16, -16:].float().mean(), frames[0, -16:, :16].float().mean()
    assert corners[0] > 200 > 50 > corners[1]  # the top-left corner turned to the top right
    assert next(iter_frames(rotated)).shape == (48, 32, 3)


def test_iter_frames_streams_every_frame(ramp_path):
    frames = list(iter_frames(ramp_path))
    assert len(frames) == 12 and frames[0].shape == (32, 48, 3)
    assert _level(torch.stack(frames)) == list(range(12))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found: .*nothere.mp4"):
        read_frames(tmp_path / "nothere.mp4")
    with pytest.raises(FileNotFoundError, match="expected a video file, got a directory"):
        read_frames(tmp_path)


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
def test_corrupt_file_raises_decode_error_naming_path(tmp_path, ramp_path, kind):
    data = {"random": np.random.default_rng(0).bytes(3000),
            "truncated": ramp_path.read_bytes()[: ramp_path.stat().st_size // 2],
            "empty": b""}[kind]
    bad = tmp_path / f"{kind}.mp4"
    bad.write_bytes(data)
    for call in (probe_video, read_frames):
        with pytest.raises(VideoDecodeError, match=f"{kind}.mp4") as info:
            call(bad)
        assert info.value.path == str(bad)


def test_read_frames_rejects_bad_indices(ramp_path):
    with pytest.raises(ValueError, match="negative"):
        read_frames(ramp_path, [-1])
    with pytest.raises(ValueError, match="empty"):
        read_frames(ramp_path, [])


def test_write_video_is_reproducible(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (12, 32, 48, 3), dtype=np.uint8)
    first = write_video(tmp_path / "a.mp4", frames).read_bytes()
    assert all(write_video(tmp_path / f"{i}.mp4", frames).read_bytes() == first for i in range(5))


def test_write_video_validates_input(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(tmp_path / "s.mp4", np.zeros((32, 32, 3), np.uint8))
