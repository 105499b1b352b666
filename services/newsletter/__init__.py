"""Newsletter: double opt-in subscriptions and the daily digest (owns the ``subscribers`` collection)."""
