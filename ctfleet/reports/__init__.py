"""Reports computed from the registry, the norms and the results store."""
