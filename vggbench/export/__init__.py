"""Export stage: hybridize and export to MXNet symbol/params and portable ONNX with a parity gate
(``onnx``), then deployment variants of the ONNX file (``variants``: ORT-optimized, INT8, FP16)."""
