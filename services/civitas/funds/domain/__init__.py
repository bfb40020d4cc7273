"""The funds domain: accounts with reservations, transfers, expenditures. No transport."""
