#!/usr/bin/env bash
# A local cluster with everything promoter needs, for users with Docker: kind, Argo Workflows v4.1.2,
# Argo Rollouts v1.9.1, the promoter image, and the chart (`make cluster`).
#
# NOT exercised by this project's CI: there is no Docker engine there. What CI does check is the
# chart itself, against a real API server (tests/test_chart.py). Needs docker, kind, kubectl, helm
# (v3.14+ or v4) on PATH.
set -euo pipefail

CLUSTER=${CLUSTER:-promoter}
NAMESPACE=promoter                 # manifests/vault/roles.yaml binds the service accounts of this one
ARGO_WORKFLOWS_VERSION=v4.1.2
ARGO_ROLLOUTS_VERSION=v1.9.1
IMAGE=promoter:dev
REPO=$(cd "$(dirname "$0")/.." && pwd)

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "dev/kind.sh: $tool is not on PATH" >&2; exit 2; }
done

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
kubectl config use-context "kind-$CLUSTER"

echo "== Argo Workflows $ARGO_WORKFLOWS_VERSION and Argo Rollouts $ARGO_ROLLOUTS_VERSION"
kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f -
kubectl -n argo apply --server-side -f \
  "https://github.com/argoproj/argo-workflows/releases/download/$ARGO_WORKFLOWS_VERSION/install.yaml"
kubectl create namespace argo-rollouts --dry-run=client -o yaml | kubectl apply -f -
kubectl -n argo-rollouts apply -f \
  "https://github.com/argoproj/argo-rollouts/releases/download/$ARGO_ROLLOUTS_VERSION/install.yaml"
kubectl -n argo rollout status deployment/workflow-controller --timeout=300s
kubectl -n argo-rollouts rollout status deployment/argo-rollouts --timeout=300s

echo "== the image"
docker build --target runtime -t "$IMAGE" "$REPO"
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== the webhook's certificate (no cert-manager here)"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
if ! kubectl -n "$NAMESPACE" get secret promoter-webhook-tls >/dev/null 2>&1; then
  tls=$(mktemp -d)
  "$REPO/.venv/bin/promoter" webhook-cert --host "promoter-operator-webhook.$NAMESPACE.svc" --out "$tls"
  kubectl -n "$NAMESPACE" create secret generic promoter-webhook-tls --from-file="$tls/"
  rm -rf "$tls"
fi

echo "== the chart"
helm upgrade --install promoter "$REPO/charts/promoter" --namespace "$NAMESPACE" \
  --set image.repository=promoter --set image.tag=dev --set image.pullPolicy=Never \
  --wait --timeout 10m "$@"
# models come next, once one is registered: --set 'models[0].name=digits,models[0].modelUri=models:/digits@champion'
echo "done: kubectl -n $NAMESPACE get deploy,rollouts,svc; kind delete cluster --name $CLUSTER to remove it"
