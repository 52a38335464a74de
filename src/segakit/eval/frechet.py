"""Frechet distance between two sets of feature vectors (the FID formula, on any features)."""

from __future__ import annotations

import numpy as np


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for the rows of ``a`` and ``b``.

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the symmetric
    matrix S_a^(1/2) S_b S_a^(1/2), which has the same spectrum; this stays real and stable when the
    covariances are singular (fewer samples than dimensions).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = _psd_sqrt(s_a)
    eig = np.linalg.eigvalsh(root @ s_b @ root)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean)
