"""The party_orgs domain: aggregates, their events and rules. No transport, no SQL."""
