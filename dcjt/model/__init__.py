"""The model: the emotion order, networks and their names, image decoding and preprocessing, and
the one forward pass training and serving share. With ``dcjt.serving`` it is the registered
model's code, so it imports nothing else of the project (``dcjt.registry.packaging``)."""
