"""A seeded fleet simulator that runs the same policy code the operator runs."""
