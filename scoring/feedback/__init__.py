"""The feedback loop: labels joined to monitored events, KPIs per model, the River challenger and
the champion/challenger comparison."""
