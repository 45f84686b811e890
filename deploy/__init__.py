"""Deployment of a pruned, quantized keyword-spotting network: compaction (pruned kernels
removed), integer inference in numpy, C code generation and ONNX export of the float model."""
