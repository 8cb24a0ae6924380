"""The learn role: labels joined to monitoring records, KPIs, the River challenger.

``step`` is the role; ``shard`` one partition's learner state, ``merge`` the KPIs of every
shard as one snapshot, ``challenger`` its export and promotion, ``estimates`` the check of
performance estimates against realized KPIs.
"""
