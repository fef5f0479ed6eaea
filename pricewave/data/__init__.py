"""Real data: the Ta Feng grocery transactions (:mod:`~pricewave.data.datasets`) and their replay onto
the clicks topic as purchase events (:mod:`~pricewave.data.replay`)."""
