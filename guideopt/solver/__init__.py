"""CP-SAT planner over the precomputed option tables."""
