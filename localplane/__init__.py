"""A local emulated Kubernetes control plane for tests and `infleet up`."""
