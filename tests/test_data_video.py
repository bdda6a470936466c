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


def test_index_past_the_end_gets_last_frame(ramp_path):
    assert _level(read_frames(ramp_path, [10, 11, 12, 40])) == [10, 11, 11, 11]


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
