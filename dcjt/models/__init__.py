"""The model: the emotion order, networks and their names, image decoding and preprocessing, and
the one forward pass training and serving share. The registered model ships the torch-free part
(emotion order, decoding, preprocessing) as its code (``dcjt.registry.packaging``), so it imports
nothing else of the project."""
