"""The file MLflow logs as the registered model's code (MLflow's models-from-code).

Loading the model runs this file in the serving environment: it imports only the serving modules
(no training code, no configuration), which ``dcjt.registry.packaging`` copies beside it.
"""

from mlflow.models import set_model

from dcjt.serving.pyfunc import DCNPyfunc

set_model(DCNPyfunc())
