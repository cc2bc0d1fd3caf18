"""Alerts that reach a person: the built-in alert catalogue (one definition for the console's
evaluator and the shipped Prometheus rules) and delivery to webhooks and e-mail."""
