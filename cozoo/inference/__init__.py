"""Inference on video: the one home for running a model over frames as they come.

* `cozoo.continual.stream` (`Stream`, `Prediction`): a continual model stepped frame by frame (it sits with
  the continual core, because ``model.stream()`` builds it).
* `cozoo.inference.video`: decoding a video file, preprocessing each frame as the clip transform does, and
  stepping a model over it (`VideoStreamer`, `stream_video`).
* `cozoo.inference.plots`: probabilities over time.

This ``__init__`` imports nothing, so torch-free modules of the package stay importable without torch.
"""
