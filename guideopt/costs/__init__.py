"""Pure, vectorised cost functions: roofline latency, memory and communication."""
