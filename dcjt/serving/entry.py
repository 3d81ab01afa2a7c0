"""The file MLflow logs as the registered model's code (MLflow's models-from-code).

Loading the model runs this file in the serving environment: it imports only the torch-free
serving modules (``dcjt.registry.packaging`` copies exactly the modules it reaches beside it).
"""

from mlflow.models import set_model

from dcjt.serving.onnx_runtime import DCNOnnxPyfunc

set_model(DCNOnnxPyfunc())
