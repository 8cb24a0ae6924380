"""Work on tables, off the stream: training a bundle, scoring a file, reading input tables,
synthetic data for the demo, tests and benchmarks."""
