"""Differential machine learning (Huge & Savine 2020) in PyTorch: Sobolev training on noisy pathwise derivatives."""
