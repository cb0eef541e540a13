"""The pure core: models, classification, norms, compliance. No network or process I/O here."""
