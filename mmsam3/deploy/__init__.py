"""Export helpers for mmdeploy / ONNX."""
