"""Narration: speech audio ("Listen to this article") for every usable stored article."""
