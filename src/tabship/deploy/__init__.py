"""Kubernetes: manifests (pure), the policy checker, and the GKE / any-cluster deploy plans."""
