"""Derivatives you do not have exactly (a new section, in progress): how Sobolev training's advantage
over regular training falls as the derivative labels get noisier (:mod:`sobolev.inexact.compute`)."""
