"""Privacy: differentially private training (``dp``) and the leakage audit (``audit``)."""
