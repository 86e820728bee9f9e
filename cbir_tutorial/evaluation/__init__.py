"""Evaluation: precision@K, recall@K, AP@K and MAP@K from a relevance mask, and leave-one-out ``evaluate``."""

from .metrics import (average_precision_at_k, evaluate, map_at_k, precision_at_k, recall_at_k,
                      relevance_mask)

__all__ = ["average_precision_at_k", "evaluate", "map_at_k", "precision_at_k", "recall_at_k", "relevance_mask"]
