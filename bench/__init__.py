"""`make bench`: benchmarks of floodsite, and the bench-only Django wiring they need."""
