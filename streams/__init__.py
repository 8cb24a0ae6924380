"""The Faust side of streamscore: app, score paths, settings, web views, CLI, dev broker.

Only this package imports Faust or a Kafka client.
"""
