"""SENN's mathematics (ALGORITHMS.md §3), used by its selector: per-example statistics of a chain
(``chain_sample``), the K-FAC natural expansion scores (``natural_scores``), and the proposal
searches (``proposals``: MALA, gradient ascent, softmax / best choice). Functions on tensors; no part."""
