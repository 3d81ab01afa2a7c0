"""The model registry's lifecycle without ZenML: packaging, registration and aliases, the
promotion gate, the model card, and the record of the rows each version trained on."""
