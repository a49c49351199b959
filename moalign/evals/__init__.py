"""Evaluation: rollouts, fronts (front.json), Pareto maths (pymoo) and plots."""
