//go:build tools

// The Argo Rollouts controller the Kubernetes tests run, pinned by this module's go.mod.
package testbed

import (
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
