"""Model logic of streamscore: pure Python and numpy, no Kafka, no asyncio.

Everything here is what a batch job would also call: the model bundle, training,
event validation, batch scoring, and (as they land) drift statistics, KPIs and the
online learner.
"""
