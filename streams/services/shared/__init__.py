"""What more than one role uses: the bounded intake of side topics, dead letters, state on the
``checkpoints`` topic and the serving state on ``model-updates``."""
