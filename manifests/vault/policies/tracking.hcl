# MLflow tracking server (`promoter tracking-server`): its admin password, the Flask secret key, the
# backend store URI (with the database password) and the password HASHES of the components' MLflow
# users, never their passwords (those live only in each component's own path).
path "secret/data/promoter/tracking" {
  capabilities = ["read"]
}
