"""The kopf operator: thin handlers over pure render/status functions."""
