"""pricewave."""
