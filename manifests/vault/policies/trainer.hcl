# pipeline steps (train, evaluate): MLflow tracking token, object-storage keys, data and Git tokens.
path "secret/data/promoter/trainer" {
  capabilities = ["read"]
}
