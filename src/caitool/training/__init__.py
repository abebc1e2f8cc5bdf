"""Training stages: read all records, train with TRL, write a model directory, emit an artifact record."""
