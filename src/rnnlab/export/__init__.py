"""Deployable exports of trained language models: the one-step ONNX graph
(``step``, ``exporter``), 8-bit weights (``quant``), a numpy + onnxruntime stepper that
needs no torch (``runtime``) and a predictor on top of it (``predictor``)."""
