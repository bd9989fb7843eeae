"""Outbound webhooks: a tenant's admins subscribe endpoints to its events and read the delivery log."""
