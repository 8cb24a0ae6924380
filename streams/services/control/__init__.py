"""The control role and the model commands: the serving state on ``model-updates`` applied by
every worker (``step``), bundles loaded off the loop (``loads``), deploy/rollback/promote and
retrain (``commands``), labelled events read back for them (``labelled``).
"""
