"""Live inference: sources (file, loopback TCP served by ffmpeg), reconnection, bounded pacing, JSON lines
against their schema, annotated MP4 decoded back, Ctrl-C, several sources, ``cozoo stream`` options."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest
import torch
from helpers import faststart_video

import cozoo
from cozoo.cli import main
from cozoo.continual import to_continual
from cozoo.data import read_frames, write_video
from cozoo.data.video import VideoDecodeError
from cozoo.inference.annotate import AnnotatedWriter, draw_overlay, overlay_box
from cozoo.inference.jsonl import JsonLines, jsonl_schema
from cozoo.inference.live import LiveOptions, LiveRunner, StepLog, stamp
from cozoo.inference.pacing import FrameBuffer, QueuedFrame
from cozoo.inference.pool import StreamPool
from cozoo.inference.sources import ReconnectPolicy, SourceFrame, parse_source, read_source
from cozoo.inference.video import VideoStreamer, frame_transform, stream_video
from cozoo.registry import get_config

CROP = 32
CLASSES = ["left", "right", "grow"]
FRAMES, FPS = 40, 20

pytestmark = pytest.mark.usefixtures("one_thread")
FFMPEG = shutil.which("ffmpeg")
RTSP_SERVER = shutil.which("rtsp-server-perl")  # Debian's rtsp-server-perl, installed by .ci/run
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None and not os.environ.get("CI"),
                                  reason="ffmpeg not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames of moving noise blocks at 20 fps (64x80): every frame differs."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 160, 3), dtype=np.uint8)
    frames = np.stack([base[:, 2 * t: 2 * t + 80] for t in range(FRAMES)])
    return write_video(tmp_path_factory.mktemp("live") / "noise.mp4", frames, fps=FPS)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    regular = cozoo.create_model("late_fusion", num_classes=len(CLASSES), widths=(4, 8))
    for module in regular.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return to_continual(regular.eval(), pool_window=4).eval()  # a warm-up of 4 frames, centred 3 back


TRANSFORM = frame_transform(get_config("late_fusion"), CROP)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, server: subprocess.Popen) -> None:
    """Until a socket listens on ``port`` (read from /proc/net/tcp: connecting would take the server's one
    client), at most 10 s."""
    wanted = f":{port:04X} 00000000:0000 0A"
    for _ in range(200):
        if wanted in Path("/proc/net/tcp").read_text() or server.poll() is not None:
            return
        threading.Event().wait(0.05)


@contextmanager
def serve(path: Path, port: int, realtime: bool = True) -> Iterator[subprocess.Popen]:
    """ffmpeg serving ``path`` (its frames, not re-encoded) as MPEG-TS to the first client of
    tcp://127.0.0.1:``port``; always killed on exit."""
    assert FFMPEG is not None, "ffmpeg is needed (.ci/run installs it)"
    command = [FFMPEG, "-nostdin", "-v", "error", *(["-re"] if realtime else []), "-i", str(path),
               "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, server)
        yield server
    finally:
        server.kill()
        server.wait(timeout=10)


def _reference(model: torch.nn.Module, path: Path, sampling_rate: int = 1) -> list:
    """Predictions of the plain per-file path (`VideoStreamer`), the reference for every live path."""
    return list(stream_video(VideoStreamer(model, TRANSFORM, sampling_rate), path))


def _assert_same(live: list, reference: list, rtol: float = 1e-5) -> None:
    """Same stamps, same logits to ``rtol`` (the live runner steps the stream pool, which runs the plain
    step; the reference file streamer takes the step's fast paths: equal up to float rounding)."""
    assert [(p.frame_index, p.centre_frame, p.step) for p in live] == \
        [(p.frame_index, p.centre_frame, p.step) for p in reference]
    for a, b in zip(live, reference, strict=True):
        torch.testing.assert_close(a.logits, b.logits, rtol=rtol, atol=rtol * b.logits.abs().max().item())


def _lines(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        jsonschema.validate(record, jsonl_schema())
    return records


def test_parse_source(video: Path, tmp_path: Path) -> None:
    assert parse_source(str(video)).kind == "file" and not parse_source(str(video)).live
    spec = parse_source("rtsp://10.0.0.2/stream")
    assert (spec.kind, spec.live, spec.options) == ("network", True, {"rtsp_transport": "tcp"})
    assert parse_source("tcp://127.0.0.1:9/").kind == "network"
    if Path("/dev/video0").exists():
        assert parse_source("/dev/video0").format == "v4l2"
    with pytest.raises(FileNotFoundError, match="capture device not found: '/dev/video99'"):
        parse_source("/dev/video99")
    assert parse_source("v4l2:/dev/video99").format == "v4l2"  # explicit: opened (and failing) later
    camera = parse_source("avfoundation:0")
    assert (camera.kind, camera.format, camera.url) == ("device", "avfoundation", "0")
    assert parse_source("dshow:video=Cam").url == "video=Cam"
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        parse_source("ftp://host/v.mp4")
    with pytest.raises(FileNotFoundError, match="video file not found"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(FileNotFoundError, match="got a directory"):
        parse_source(str(tmp_path))


def test_read_source_file_and_truncation(video: Path, tmp_path: Path) -> None:
    frames = list(read_source(parse_source(str(video))))
    assert [f.index for f in frames] == list(range(FRAMES)) and {f.segment for f in frames} == {0}
    assert frames[1].pts == pytest.approx(1 / FPS) and frames[0].fps == FPS
    torch.testing.assert_close(torch.stack([f.image for f in frames]), read_frames(video))
    whole = faststart_video(tmp_path / "whole.mp4", frames=40).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    notes: list[str] = []
    cut = list(read_source(parse_source(str(tmp_path / "cut.mp4")), warnings_out=notes))
    assert 0 < len(cut) < 38 and len(notes) == 1 and "of the 40 frames the file declares" in notes[0]
    (tmp_path / "moov_last.mp4").write_bytes(video.read_bytes()[:2000])  # no index: unreadable
    with pytest.raises(VideoDecodeError, match="cannot decode video"):
        list(read_source(parse_source(str(tmp_path / "moov_last.mp4"))))


def test_frame_buffer_drops_oldest_for_live_and_waits_for_files() -> None:
    def item(i: int, steps: int = 1) -> QueuedFrame:
        frame = SourceFrame(i, 0, i, None, torch.zeros(1), 0.0, 0.0)
        return QueuedFrame(frame, steps, None)

    buffer = FrameBuffer(2, capacity=3, drop_oldest=[True, False])
    for i, steps in enumerate([1, 1, 0, 1, 1]):  # frame 2 only to be drawn: dropped first
        assert buffer.put(0, item(i, steps))
    assert [q.frame.index for q in buffer.queues[0]] == [1, 3, 4]
    counts = buffer.counts[0]
    assert (counts.dropped, counts.dropped_steps, counts.high_water) == (2, 1, 3)
    for i in range(3):
        buffer.put(1, item(i))
    blocked = threading.Thread(target=buffer.put, args=(1, item(3)))
    blocked.start()  # a file's reader waits for room
    blocked.join(0.2)
    assert blocked.is_alive() and len(buffer.queues[1]) == 3
    taken = buffer.take()
    assert taken is not None and {i: q.frame.index for i, q in taken.items()} == {0: 1, 1: 0}
    blocked.join(5)
    assert not blocked.is_alive() and [q.frame.index for q in buffer.queues[1]] == [1, 2, 3]
    assert buffer.counts[1].dropped == 0
    buffer.end(0)
    buffer.end(1)
    while (items := buffer.take()) is not None:
        assert items
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        FrameBuffer(1, 0, [True])


def test_step_log_and_stamp_follow_dropped_frames(model: torch.nn.Module) -> None:
    """Stamps name the frames actually fed, whatever was dropped in between."""
    log = StepLog(keep=model.delay + 2)
    batcher = StreamPool(model, capacity=1)
    sid = batcher.open()
    fed = [0, 1, 5, 6, 7, 20, 21, 22, 23, 30, 31]  # gaps: dropped frames
    stamps = []
    for index in fed:
        log.append(SourceFrame(index, 0, index, index / 10, torch.zeros(1), 0.0, 10.0))
        out = batcher.push({sid: torch.zeros(3, CROP, CROP)})[sid]
        if out is not None:
            prediction, pts, centre_pts = stamp(out, log)
            stamps.append((prediction.frame_index, prediction.centre_frame, pts, centre_pts))
    # the first output comes after first_output + 1 steps; its source clip starts `delay` steps back
    step, clip = model.first_output, cozoo.continual.timing(model).clip_length
    first, last = step - model.delay, step - model.delay + clip - 1
    centre_step = first + (clip - 1) // 2
    assert stamps[0] == (fed[step], (fed[first] + fed[last]) / 2, fed[step] / 10, fed[centre_step] / 10)
    assert len(stamps) == len(fed) - step


def test_file_through_the_runner_equals_the_file_streamer(model: torch.nn.Module, video: Path,
                                                          tmp_path: Path) -> None:
    jsonl = JsonLines(tmp_path / "file.jsonl")
    runner = LiveRunner(model, TRANSFORM, [parse_source(str(video))], CLASSES,
                        LiveOptions(sampling_rate=2, top_k=2, keep=True), jsonl=jsonl)
    (run,) = runner.run()
    reference = _reference(model, video, sampling_rate=2)
    _assert_same(run.kept, reference)
    records = _lines(tmp_path / "file.jsonl")
    assert [r["frame"] for r in records[:-1]] == [p.frame_index for p in reference]
    assert records[0]["pts"] == pytest.approx(reference[0].frame_index / FPS)
    assert all(r["lag"] is None and len(r["top"]) == 2 for r in records[:-1])
    top = reference[0].probs.topk(2)
    assert [t["index"] for t in records[0]["top"]] == top.indices.tolist()
    assert records[-1] | {"seconds": 0} == {
        "type": "summary", "source": str(video), "source_index": 0, "frames": FRAMES, "steps": FRAMES // 2,
        "predictions": len(reference), "skipped": FRAMES // 2, "dropped": 0, "dropped_steps": 0,
        "reconnects": 0, "seconds": 0, "interrupted": False, "error": None}
    assert not list(tmp_path.glob(".*partial"))


@needs_ffmpeg
def test_tcp_stream_equals_the_file(model: torch.nn.Module, video: Path, tmp_path: Path) -> None:
    """The same frames served live over loopback TCP give the file's predictions (nothing dropped: a
    buffer larger than the video)."""
    port = _free_port()
    with serve(video, port, realtime=False):
        jsonl = JsonLines(tmp_path / "tcp.jsonl")
        runner = LiveRunner(model, TRANSFORM, [parse_source(f"tcp://127.0.0.1:{port}")], CLASSES,
                            LiveOptions(capacity=FRAMES + 1, keep=True,
                                        reconnect=ReconnectPolicy(retries=0, timeout=10)), jsonl=jsonl)
        (run,) = runner.run()
    _assert_same(run.kept, _reference(model, video))
    records = _lines(tmp_path / "tcp.jsonl")
    assert all(r["lag"] is not None and r["lag"] >= 0 for r in records[:-1])
    assert records[-1]["frames"] == FRAMES and records[-1]["dropped"] == 0


@needs_ffmpeg
def test_udp_stream_equals_the_file_and_times_out(model: torch.nn.Module, video: Path) -> None:
    """MPEG-TS over loopback UDP (the client listens; ffmpeg sends once it is bound): the frames that came
    give the file's predictions, and the silence after the last one ends the source after its timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    messages: list[str] = []
    runner = LiveRunner(model, TRANSFORM, [parse_source(f"udp://127.0.0.1:{port}")], CLASSES,
                        LiveOptions(capacity=FRAMES + 1, keep=True,
                                    reconnect=ReconnectPolicy(retries=0, timeout=1)), log=messages.append)
    result: list = []
    thread = threading.Thread(target=lambda: result.extend(runner.run()))
    thread.start()
    wanted = f"0100007F:{port:04X} 00000000:0000"
    for _ in range(200):  # until the client's socket is bound
        if wanted in Path("/proc/net/udp").read_text() or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    sender = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-re", "-i", str(video), "-c", "copy", "-f",
                             "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"], timeout=60, check=False)
    thread.join(60)
    assert sender.returncode == 0 and not thread.is_alive()
    (run,) = result
    reference = _reference(model, video)
    assert len(reference) - 4 <= len(run.kept) <= len(reference)  # the decoder may hold the last frames
    _assert_same(run.kept, reference[: len(run.kept)])
    assert messages == [f"udp://127.0.0.1:{port}: no data for 1 s; giving up after 0 reconnection attempts"]


@needs_ffmpeg
def test_killed_server_is_reconnected_and_warm_up_restarts(model: torch.nn.Module, video: Path,
                                                           tmp_path: Path) -> None:
    port = _free_port()
    reference = _reference(model, video)
    servers = ExitStack()
    first = servers.enter_context(serve(video, port))
    killed = threading.Event()

    def on_prediction(run, prediction, record) -> None:  # noqa: ANN001
        if record["segment"] == 0 and not killed.is_set():
            killed.set()  # the server dies mid-stream, then comes back
            first.kill()
            first.wait(timeout=10)
            servers.enter_context(serve(video, port, realtime=False))
        if record["segment"] == 1 and record["step"] >= model.first_output + 2:
            runner.stop()

    messages: list[str] = []
    jsonl = JsonLines(tmp_path / "reconnect.jsonl")
    runner = LiveRunner(model, TRANSFORM, [parse_source(f"tcp://127.0.0.1:{port}")], CLASSES,
                        LiveOptions(capacity=FRAMES + 1, keep=True,
                                    reconnect=ReconnectPolicy(retries=50, delay=0.05, max_delay=0.1)),
                        jsonl=jsonl, on_prediction=on_prediction, log=messages.append)
    with servers:
        (run,) = runner.run()
    assert killed.is_set() and run.reconnects == 1
    assert any("reconnecting in" in m for m in messages)
    records = _lines(tmp_path / "reconnect.jsonl")
    (event,) = [r for r in records if r["type"] == "reconnect"]
    before = [r for r in records if r["type"] == "prediction" and r["segment"] == 0]
    after = [r for r in records if r["type"] == "prediction" and r["segment"] == 1]
    assert event["segment"] == 1 and event["frame"] > before[-1]["frame"]
    # The model restarted from its warm-up on the new connection's frames: the file's first predictions.
    assert after[0]["step"] == model.first_output and after[0]["frame"] == event["frame"] + model.first_output
    segment_1 = [p for p, r in zip(run.kept, [r for r in records if r["type"] == "prediction"], strict=True)
                 if r["segment"] == 1]
    for live, ref in zip(segment_1, reference, strict=False):
        scale = ref.logits.abs().max().item()
        torch.testing.assert_close(live.logits, ref.logits, rtol=1e-5, atol=1e-5 * scale)
        assert live.frame_index - event["frame"] == ref.frame_index


@pytest.mark.skipif((FFMPEG is None or RTSP_SERVER is None) and not os.environ.get("CI"),
                    reason="ffmpeg and rtsp-server-perl not installed (.ci/run installs them)")
def test_rtsp_stream_frames_and_predictions(model: torch.nn.Module, tmp_path: Path) -> None:
    """An RTSP server on loopback (rtsp-server-perl, fed by ffmpeg looping an all-intra video, not
    re-encoded): the frames that arrive are the file's, in order, and their predictions are those of the
    per-file streamer on the same frames."""
    images = np.stack([np.roll(np.random.default_rng(t).integers(0, 256, (48, 64, 3), dtype=np.uint8), t, 1)
                       for t in range(FRAMES)])
    intra = tmp_path / "intra.mp4"
    with av.open(str(intra), "w") as container:  # every frame a key frame: decodable wherever one joins
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "10", "preset": "veryfast", "x264-params": "keyint=1"}
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    decoded = read_frames(intra)
    client_port, source_port = _free_port(), _free_port()
    loopback = ["--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"]
    server = subprocess.Popen([RTSP_SERVER, "-c", str(client_port), "-s", str(source_port), *loopback],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publisher = None
    try:
        _wait_listening(source_port, server)
        publisher = subprocess.Popen([FFMPEG, "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i",
                                      str(intra), "-c", "copy", "-f", "rtsp",
                                      f"rtsp://127.0.0.1:{source_port}/cam"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        received: list[torch.Tensor] = []
        runner = LiveRunner(
            model, TRANSFORM, [parse_source(f"rtsp://127.0.0.1:{client_port}/cam", rtsp_transport="udp")],
            CLASSES, LiveOptions(capacity=FRAMES, keep=True,  # opening fails until the stream is published
                                 reconnect=ReconnectPolicy(retries=40, delay=0.1, max_delay=0.2, timeout=5)),
            on_frame=lambda run, item: received.append(item.frame.image),
            on_prediction=lambda run, prediction, record: runner.stop() if run.predictions >= 12 else None,
            log=lambda message: None)
        (run,) = runner.run()
    finally:
        for process in (publisher, server):
            if process is not None:
                process.kill()
                process.wait(timeout=10)
    assert run.reconnects == 0 and run.predictions == 12
    start = next(i for i, image in enumerate(received) if any(torch.equal(image, d) for d in decoded))
    offset = next(t for t in range(FRAMES) if torch.equal(received[start], decoded[t]))
    assert start <= 2  # at most a partial frame or two where the client joined
    for i, image in enumerate(received[start:]):
        torch.testing.assert_close(image, decoded[(offset + i) % FRAMES], rtol=0, atol=0)
    streamer = VideoStreamer(model, TRANSFORM)
    assert len(received) == run.steps  # every frame taken was stepped (sampling rate 1)
    reference = list(streamer.feed(received))
    _assert_same(run.kept, reference)


class SlowStreams(StreamPool):
    """A model far slower than the source (sleeps per step)."""

    def push(self, frames: dict[int, torch.Tensor]) -> dict:
        threading.Event().wait(0.15)
        return super().push(frames)


@needs_ffmpeg
def test_slow_model_drops_frames_with_a_bounded_buffer(model: torch.nn.Module, video: Path,
                                                       tmp_path: Path) -> None:
    """20 frames/s served, ~6 steps/s taken: the frame-rate rule leaves out every other frame, then the
    oldest queued frames are dropped; the buffer never holds more than its capacity."""
    port = _free_port()
    with serve(video, port):
        jsonl = JsonLines(tmp_path / "slow.jsonl")
        runner = LiveRunner(model, TRANSFORM, [parse_source(f"tcp://127.0.0.1:{port}")], CLASSES,
                            LiveOptions(sampling_rate=2, capacity=2, reconnect=ReconnectPolicy(retries=0)),
                            batcher=SlowStreams(model), jsonl=jsonl)
        (run,) = runner.run()
    counts = runner.buffer.counts[0]
    assert counts.decoded == FRAMES and counts.skipped == FRAMES // 2
    assert counts.dropped > 0 and counts.high_water <= 2
    assert run.steps + counts.dropped_steps == FRAMES // 2  # every model frame was stepped or dropped
    summary = _lines(tmp_path / "slow.jsonl")[-1]
    assert summary["dropped"] == counts.dropped and summary["skipped"] == FRAMES // 2


def _decode(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def test_annotated_video_decodes_back_with_the_overlay_only_in_its_box(
    model: torch.nn.Module, video: Path, tmp_path: Path
) -> None:
    """Lossless (crf 0) so pixels compare exactly: outside the panel the annotated video equals the input
    re-encoded the same way; inside, each frame shows the latest prediction made up to it (from the
    plain file streamer), never a later one."""
    out = tmp_path / "annotated.mp4"
    runner = LiveRunner(model, TRANSFORM, [parse_source(str(video))], CLASSES,
                        LiveOptions(top_k=3, crf=0), out_paths=[str(out)])
    runner.run()
    frames = read_frames(video).numpy()
    plain, expected = AnnotatedWriter(tmp_path / "plain.mp4", FPS, crf=0), AnnotatedWriter(
        tmp_path / "expected.mp4", FPS, crf=0)
    by_frame = {p.frame_index: p for p in _reference(model, video)}
    latest = None
    for t, image in enumerate(frames):
        if t in by_frame:
            top = by_frame[t].probs.topk(3)
            latest = [(CLASSES[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
        plain.write(image, t / FPS)
        expected.write(draw_overlay(image, latest, 3), t / FPS)
    plain.close()
    expected.close()
    annotated, rate = _decode(out)
    reencoded, _ = _decode(tmp_path / "plain.mp4")
    assert annotated.shape == frames.shape and rate == FPS
    np.testing.assert_array_equal(annotated, _decode(tmp_path / "expected.mp4")[0])
    left, top_px, right, bottom = overlay_box(frames.shape[2], frames.shape[1], 3)
    outside = np.ones(frames.shape[1:3], bool)
    outside[max(top_px - 2, 0): bottom + 2, max(left - 2, 0): right + 2] = False  # +2: chroma 2x2 blocks
    changed = np.abs(annotated.astype(int) - reencoded.astype(int)).max(axis=-1)
    assert (changed[:, outside] == 0).all()
    assert (changed[:, top_px:bottom, left:right].mean(axis=(1, 2)) > 20).all()


def test_overlay_grows_with_the_frame_and_stays_in_its_box() -> None:
    for height, width in ((48, 64), (1080, 1920)):
        image = np.full((height, width, 3), 128, np.uint8)
        drawn = draw_overlay(image, [("left", 0.9), ("right", 0.1)], 2)
        left, top, right, bottom = overlay_box(width, height, 2)
        changed = (drawn != image).any(axis=-1)
        inside = changed[top:bottom, left:right]
        assert inside.mean() > 0.5 and changed.sum() == inside.sum()
        assert bottom - top == min(height, (4 + 2 * 17) * max(1, round(height / 360)))
        np.testing.assert_array_equal(image, 128)  # the input is left alone


def test_ctrl_c_keeps_outputs_valid(model: torch.nn.Module, video: Path, tmp_path: Path) -> None:
    def interrupt(run, prediction, record) -> None:  # noqa: ANN001
        if run.predictions == 3:
            raise KeyboardInterrupt

    runner = LiveRunner(model, TRANSFORM, [parse_source(str(video))], CLASSES, LiveOptions(),
                        jsonl=JsonLines(tmp_path / "p.jsonl"), out_paths=[str(tmp_path / "a.mp4")],
                        on_prediction=interrupt)
    (run,) = runner.run()
    assert runner.interrupted and run.predictions == 3
    records = _lines(tmp_path / "p.jsonl")
    assert [r["type"] for r in records] == ["prediction"] * 3 + ["summary"] and records[-1]["interrupted"]
    frames, _ = _decode(tmp_path / "a.mp4")
    assert len(frames) == records[2]["frame"]  # frames drawn before the step that was interrupted
    assert not list(tmp_path.glob(".*partial"))


def test_several_sources_side_by_side(model: torch.nn.Module, video: Path, tmp_path: Path) -> None:
    short = write_video(tmp_path / "short.mp4", read_frames(video)[:25].numpy(), fps=FPS)
    runner = LiveRunner(model, TRANSFORM, [parse_source(str(video)), parse_source(str(short))], CLASSES,
                        LiveOptions(keep=True))
    first, second = runner.run()
    _assert_same(first.kept, _reference(model, video))
    _assert_same(second.kept, _reference(model, short))


def test_cli_stream_jsonl_to_stdout_and_annotated_video(
    video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    code = main(["stream", str(video), str(video), "--model", "colate_fusion", "--crop", str(CROP),
                 "--sampling-rate", "2", "--top-k", "2", "--jsonl", "-", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    records = [json.loads(line) for line in captured.out.splitlines()]  # standard output: only JSON
    for record in records:
        jsonschema.validate(record, jsonl_schema())
    assert {r["source_index"] for r in records} == {0, 1}
    assert [r["type"] for r in records][-2:] == ["summary", "summary"]
    assert "[0] " in captured.err and "wrote " in captured.err and "%|" not in captured.err
    for i in (0, 1):
        frames, rate = _decode(tmp_path / f"out-{i}.mp4")
        assert len(frames) == FRAMES and rate == FPS
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(records[0] | {"lag": "late"}, jsonl_schema())
    common = [str(video), "--model", "colate_fusion", "--crop", str(CROP)]
    assert main(["stream", *common, "--out", str(tmp_path)]) == 2
    assert "--out '" in (err := capsys.readouterr().err) and "is a directory; give an .mp4 file name" in err
    assert main(["stream", *common, "--jsonl", str(tmp_path / "out-0.mp4" / "x.jsonl")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["stream", *common, "--reconnect-retries", "-1"]) == 2
    assert "--reconnect-retries must be 0 or more, got -1" in capsys.readouterr().err


@needs_ffmpeg
def test_cli_stream_live_source_and_gone_server(video: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    jsonl = tmp_path / "live.jsonl"
    with serve(video, port, realtime=False):  # the whole file at once: a buffer that holds it drops nothing,
        # however fast frames decode against the model's first steps
        code = main(["stream", f"tcp://127.0.0.1:{port}", "--model", "colate_fusion", "--crop", str(CROP),
                     "--sampling-rate", "1", "--jsonl", str(jsonl), "--reconnect-retries", "0",
                     "--buffer", str(FRAMES)])
    captured = capsys.readouterr()
    assert code == 0 and "s behind]" in captured.out
    assert "giving up after 0 reconnection attempts" in captured.err
    assert _lines(jsonl)[-1]["frames"] == FRAMES
    assert main(["stream", f"tcp://127.0.0.1:{_free_port()}", "--model", "colate_fusion", "--crop",
                 str(CROP), "--reconnect-retries", "0", "--quiet"]) == 1
    assert "Connection refused" in capsys.readouterr().err
