"""The seven emotions in RAF-DB's order, 0-indexed: the network's output order and every label
table's class order (readers map each release into it by emotion name)."""

EMOTIONS: tuple[str, ...] = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
NUM_CLASSES = len(EMOTIONS)
