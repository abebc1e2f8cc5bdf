"""Training stages: they read all records, train with TRL, and write a model directory."""
