"""The registered model as MLflow serves it: the pyfunc model and the file MLflow logs as its code."""
