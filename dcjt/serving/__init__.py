"""The registered model as MLflow serves it: input handling and the ONNX Runtime pyfunc (torch-free:
the model's own code), and on the training side the ONNX export, its parity check and the torch
network read back from the registry."""
