"""Review text as features: MiniLM sentence embeddings (:mod:`~pricewave.reviews.embedding`) and the
sentiment head trained on real reviews that scores them (:mod:`~pricewave.reviews.sentiment`)."""
