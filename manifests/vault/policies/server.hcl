# inference server: what it needs to load a model version from the registry and artifact store.
path "secret/data/promoter/server" {
  capabilities = ["read"]
}
