"""The Funnel domain: scoring, classification and the lead lifecycle. Pure and deterministic.

Nothing here knows about Kafka, Faust or PostgreSQL; time comes from the messages.
"""
