"""The Feast project (named like ``project:`` in feature_store.yaml)."""

from feast import Project

pricewave = Project(name="pricewave", description="Real-time e-commerce pricing: demand, competition, prices.")
