"""Training stages: they read all records, train with TRL, write a model directory and emit an artifact record."""
