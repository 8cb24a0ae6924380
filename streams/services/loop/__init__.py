"""The one consume -> step -> produce -> commit loop every role runs on: the loop, its steps, commit
policies, the supervisor that restarts a failed role, and what a loop counts."""
