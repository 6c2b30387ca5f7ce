"""The study that joins both: the plan of steps and the report."""
