"""Nonconformity scores for classification: LAC, APS, RAPS, SAPS, TopK, and the name registry."""
from conformal.scores.aps import APS, RAPS
from conformal.scores.base import Score, get_score, score_names
from conformal.scores.lac import LAC
from conformal.scores.saps import SAPS
from conformal.scores.topk import TopK

__all__ = ["APS", "LAC", "RAPS", "SAPS", "Score", "TopK", "get_score", "score_names"]
