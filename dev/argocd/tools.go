//go:build tools

// The Argo CD binary the GitOps tests run (application-controller and repo-server, picked by
// ARGOCD_BINARY_NAME), pinned by this module's go.mod.
package testbed

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
