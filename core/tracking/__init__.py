"""Tracking: the first-party collector (keys, validation, storage), the live data set, and the outbox
that delivers conversions server-side to Meta, Google and GA4 (`core.tracking.dispatch`)."""
