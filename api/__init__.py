"""CRD models: the contract between tenants, the operator and the autoscaler."""
