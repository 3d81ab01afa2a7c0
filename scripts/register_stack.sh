#!/usr/bin/env bash
# Register a remote ZenML stack: Kubernetes (default) or Kubeflow orchestrator, an S3-compatible
# artifact store, a container registry, and an MLflow tracking server as experiment tracker.
# Every value comes from the environment; nothing secret is written to disk by this script.
#
#   ORCHESTRATOR=kubernetes|kubeflow  KUBE_CONTEXT=my-cluster  K8S_NAMESPACE=zenml
#   KUBEFLOW_HOST=https://kubeflow.example.com/pipeline           (kubeflow only)
#   ARTIFACT_URI=s3://my-bucket/zenml  S3_ENDPOINT=https://...      (S3_ENDPOINT optional: MinIO etc.)
#   REGISTRY_URI=registry.example.com/fer
#   MLFLOW_URI=http://mlflow.mlflow.svc.cluster.local:5000
#   bash scripts/register_stack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
zenml() { .venv/bin/zenml "$@"; }
ORCHESTRATOR=${ORCHESTRATOR:-kubernetes}
: "${KUBE_CONTEXT:?set KUBE_CONTEXT}" "${ARTIFACT_URI:?set ARTIFACT_URI}" "${REGISTRY_URI:?set REGISTRY_URI}" "${MLFLOW_URI:?set MLFLOW_URI}"

zenml integration install -y s3 "$ORCHESTRATOR"
if [ "$ORCHESTRATOR" = kubeflow ]; then
  : "${KUBEFLOW_HOST:?set KUBEFLOW_HOST}"
  zenml orchestrator register fer-orchestrator --flavor=kubeflow \
    --kubernetes_context="$KUBE_CONTEXT" --kubeflow_hostname="$KUBEFLOW_HOST"
else
  zenml orchestrator register fer-orchestrator --flavor=kubernetes \
    --kubernetes_context="$KUBE_CONTEXT" --kubernetes_namespace="${K8S_NAMESPACE:-zenml}"
fi
if [ -n "${S3_ENDPOINT:-}" ]; then
  zenml artifact-store register fer-artifacts --flavor=s3 --path="$ARTIFACT_URI" \
    --client_kwargs="{\"endpoint_url\": \"$S3_ENDPOINT\"}"
else
  zenml artifact-store register fer-artifacts --flavor=s3 --path="$ARTIFACT_URI"
fi
zenml container-registry register fer-registry --flavor=default --uri="$REGISTRY_URI"
zenml stack register fer-cluster -o fer-orchestrator -a fer-artifacts -c fer-registry --set
echo "stack fer-cluster registered and active."
echo "MLflow: export MLFLOW_TRACKING_URI=$MLFLOW_URI here, and it is set in the pods by configs/remote-*.yaml."
echo "Images: docker build -f docker/Dockerfile.gpu -t $REGISTRY_URI/dcjt-gpu:0.1.0 . && docker push ...;"
echo "        the same for docker/Dockerfile.cpu, then replace REGISTRY in configs/remote-*.yaml."
