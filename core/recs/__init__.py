"""Recommendations: the contract, the models (GraphSAGE, two-tower, baselines), the registry above them, metrics and the temporal evaluation."""
