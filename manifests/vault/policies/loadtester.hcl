# load tester: credentials to call the preview service, nothing about models or training.
path "secret/data/promoter/loadtester" {
  capabilities = ["read"]
}
