# promoter operator: its own credentials (MLflow tracking token, Kubernetes-side settings). It hands
# pipeline steps a role and a path, never a value, so it needs no access to theirs.
path "secret/data/promoter/operator" {
  capabilities = ["read"]
}
