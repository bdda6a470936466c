"""Inference on video: the one home for running a model over frames as they come.

* `cozoo.continual.stream` (`Stream`, `Prediction`): a continual model stepped frame by frame (it sits with
  the continual core, because ``model.stream()`` builds it).
* `cozoo.inference.video`: decoding a video file, preprocessing each frame as the clip transform does, and
  stepping a model over it (`VideoStreamer`, `stream_video`).
* `cozoo.inference.plots`: probabilities over time.
* `cozoo.inference.pool` (`StreamPool`): many independent streams (cameras that start and stop at any
  moment) through one model, in one batched step per push; its bookkeeping is `cozoo.inference.slots`,
  free of torch so that an exported step can reuse it.
* Live video (``cozoo stream``): `cozoo.inference.sources` (files, network URLs, capture devices;
  reconnection), `cozoo.inference.pacing` (reader threads, bounded buffers, the drop policy),
  `cozoo.inference.live` (one model over one or many sources), `cozoo.inference.jsonl` (JSON lines and their
  schema) and `cozoo.inference.annotate` (the annotated MP4).
* `cozoo.inference.extract`: features of every video of a folder, as safetensors files (``cozoo extract``).

This ``__init__`` imports nothing, so torch-free modules of the package stay importable without torch.
"""
