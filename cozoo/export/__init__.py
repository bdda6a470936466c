"""Export a continual model's step to ONNX, its state as explicit inputs and outputs (`export_onnx`);
`cozoo.runtime` streams videos through the exported file without PyTorch."""
