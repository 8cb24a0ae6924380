"""The drift role: monitoring records into windows, drift reports, estimates and alerts.

``step`` is the role on one worker; ``shards``, ``sharded``, ``partials`` and ``merge`` spread its
windows over the partitions of ``monitor`` and merge them into one report
(``STREAMSCORE_DRIFT_WINDOWS=partitions``); ``agent`` is the Faust agent path.
"""
