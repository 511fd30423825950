"""The Funnel domain: scoring, classification and the lead lifecycle. Pure and deterministic.

Nothing here knows about Kafka, Faust or PostgreSQL; time comes from the messages.
"""

from funnel import accel

accel.install()   # the compiled core, when it was built from these sources (``funnel.accel``)
