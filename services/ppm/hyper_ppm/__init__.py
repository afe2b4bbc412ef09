"""PPM service: performance prediction models fitted from training runs, versioned, served."""
