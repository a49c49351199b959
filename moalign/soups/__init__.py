"""Rewarded soups: experts fine-tuned from one base, interpolated in weight space (in memory, or
merged to disk with mergekit). See docs/methods/soup.md."""
