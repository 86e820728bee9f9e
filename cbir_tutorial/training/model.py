"""The model being fine-tuned: a backbone with only its last blocks trainable, BatchNorm frozen, plus the
embedding head (:func:`cbir_tutorial.models.trained.embedding_model`: one Dense layer, or the projection
head's MLP)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..models.weights import Weights
from ..models.trained import embedding_model

#: The layers :func:`~cbir_tutorial.models.trained.embedding_model` adds on top of the backbone (the first two
#: only with a hidden layer).
HEAD_LAYERS = ("embedding_input_l2", "embedding_hidden", "embedding", "embedding_l2")
_BLOCK = re.compile(r"^(.*?block\d+)")


@dataclass
class TrainableModel:
    """``model`` (preprocessed images → L2-normalised embeddings) and its variables in two groups:
    ``head`` (the new layers: fitted first on frozen features, then trained from the first epoch) and
    ``backbone`` (the kernels of the last blocks, trained after the warm-up); ``trainable_layers`` names the
    backbone layers in ``backbone``."""

    model: object
    head: list
    backbone: list
    trainable_layers: list[str]


def block_names(model) -> list[str]:
    """The backbone's blocks in order, by layer-name prefix: ``block0`` ... ``block15`` for EfficientNet-Lite,
    ``conv5_block3`` for ResNet50, ``block14`` for Xception."""
    names = []
    for layer in model.layers:
        match = _BLOCK.match(layer.name)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def freeze_all_but_last_blocks(model, n_blocks: int) -> list[str]:
    """Make trainable only the layers of the last ``n_blocks`` blocks and the weighted layers after them (the
    1×1 head convolution of EfficientNet, VGG's fc1), besides :data:`HEAD_LAYERS`; every
    BatchNormalization layer stays frozen (Keras 3 then runs it in inference mode: its statistics never
    move). ``n_blocks=0``: the whole backbone is frozen. Returns the trainable backbone layers' names."""
    blocks = block_names(model)
    chosen = set(blocks[len(blocks) - n_blocks:]) if n_blocks > 0 else set()
    heads = [layer.name for layer in model.layers if layer.name in HEAD_LAYERS]
    layers = [layer for layer in model.layers if layer.name not in HEAD_LAYERS]
    last_block_at = max((i for i, layer in enumerate(layers) if _BLOCK.match(layer.name)), default=len(layers))
    trainable = []
    for i, layer in enumerate(layers):
        match = _BLOCK.match(layer.name)
        in_chosen = match is not None and match.group(1) in chosen
        after_blocks = n_blocks > 0 and i > last_block_at
        is_bn = type(layer).__name__ == "BatchNormalization"
        layer.trainable = (in_chosen or after_blocks) and not is_bn
        if layer.trainable and layer.weights:
            trainable.append(layer.name)
    for name in heads:
        model.get_layer(name).trainable = True
    return trainable


def trainable_model(backbone: str, embedding_dim: int, trainable_blocks: int, *, hidden_dim: int = 0,
                    weights: Weights = "imagenet", input_size: int | None = None, seed: int = 0) -> TrainableModel:
    """:func:`~cbir_tutorial.models.trained.embedding_model` with :func:`freeze_all_but_last_blocks` applied."""
    model = embedding_model(backbone, embedding_dim, hidden_dim=hidden_dim, weights=weights, input_size=input_size,
                            seed=seed)
    layers = freeze_all_but_last_blocks(model, trainable_blocks)
    head = [v for layer in model.layers if layer.name in HEAD_LAYERS for v in layer.trainable_weights]
    backbone_vars = [v for name in layers for v in model.get_layer(name).trainable_weights]
    return TrainableModel(model, head, backbone_vars, layers)
