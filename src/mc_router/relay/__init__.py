"""The asyncio data plane: listener, per-connection session, byte relay and backend dial.

Imports the pure core (`protocol`, `routing`) and `events`; never imports other adapters
(api, webhooks, metrics, automc) — they observe through events and the route table.
"""
